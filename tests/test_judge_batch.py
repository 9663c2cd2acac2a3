"""`rapport judge --batch` as a user runs it: a real DuckDB corpus made by the simulated
backend, judged through the fake provider's OpenAI Batch API and Anthropic Message Batches on
loopback with the official SDKs; the verdicts are those live judging gives, failed and expired
items go into the next batch, an invalid reply gets its one retry, and a run killed while its
batch is pending re-attaches to it on the next run without submitting anything twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from rapport.config.loader import load_domain
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.judges.scoring import active_criteria
from tests.conftest import TINY_DOMAIN, error_lines, rapport_in_process

CONVERSATIONS, EXCHANGES = 3, 2
ITEMS = CONVERSATIONS * len(active_criteria(load_domain(TINY_DOMAIN).rubric, EXCHANGES))
YES = json.dumps({"reasoning": "Exchange 2 answers what the user raised.", "answer": "YES"})
BAD = "I think it is fine."  # not JSON: a reply the judge's validation refuses
ENV = {
    "OPENAI_API_KEY": "sk-batch-test-0a1b",
    "ANTHROPIC_API_KEY": "sk-ant-batch-test-2c3d",
    "RAPPORT_BATCH_POLL_S": "0.05",
}
APIS = ("openai", "anthropic")
SLOW = pytest.mark.slow  # a corpus judged through a fake provider's batches: seconds each
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


class ManualClock:
    """The fake provider's clock, moved by the test: a batch ends only when it says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete corpus played by the simulated backend; each test judges a copy."""
    db = tmp_path_factory.mktemp("corpus") / "corpus.duckdb"
    result = rapport_in_process(
        "generate", "--db", str(db), "--count", str(CONVERSATIONS), "--turns", str(EXCHANGES),
        "--domain", str(TINY_DOMAIN), "--backend", "simulated", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return db


@pytest.fixture
def db(corpus: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "judged.duckdb"
    shutil.copy(corpus, copy)
    return copy


def _spec(api: str, base_url: str) -> str:
    root = base_url if api == "openai" else base_url.removesuffix("/v1")  # the SDK adds /v1
    return f"{api}:{MODELS[api]}@{root}"


def _judge(db: Path, spec: str, *more: str) -> subprocess.CompletedProcess[str]:
    return rapport_in_process("judge", "--db", str(db), "--judge", spec, *more, env=ENV)


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _verdicts(db: Path) -> list[tuple]:
    return _rows(
        db,
        "SELECT conversation_id, judge_id, criterion_id, answer, reasoning, judge_model "
        "FROM verdicts ORDER BY ALL",
    )


def _judge_cost(db: Path) -> tuple[int, int, float]:
    """The judge gateway's requests, prompt tokens and cost in the last judge run."""
    ((requests, prompt_tokens, cost),) = _rows(
        db,
        "SELECT g.requests, g.prompt_tokens, g.cost_usd FROM gateway_stats g "
        "JOIN runs r USING (run_id) WHERE r.command = 'judge' "
        "ORDER BY r.started_at DESC LIMIT 1",
    )
    return requests, prompt_tokens, cost


@SLOW
@pytest.mark.parametrize("api", APIS)
def test_batch_verdicts_are_live_verdicts_at_half_the_price(api, corpus, tmp_path):
    live_db, batch_db = tmp_path / "live.duckdb", tmp_path / "batch.duckdb"
    shutil.copy(corpus, live_db)
    shutil.copy(corpus, batch_db)
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        live = _judge(live_db, _spec(api, base_url))
        assert live.returncode == 0, live.stderr
        live_calls = state.requests
        batch = _judge(batch_db, _spec(api, base_url), "--batch")
        assert batch.returncode == 0, batch.stderr
    assert live_calls == ITEMS and state.requests == ITEMS  # no live call while batch judging
    assert state.batches_created == 1 and state.batch_items == ITEMS
    assert set(state.batch_submissions.values()) == {1}
    assert _verdicts(batch_db) == _verdicts(live_db) != []
    assessments = "SELECT conversation_id, judge_id, score, passed FROM assessments ORDER BY ALL"
    assert _rows(batch_db, assessments) == _rows(live_db, assessments)
    assert _rows(batch_db, "SELECT count(*) FROM judge_failures") == [(0,)]
    assert _rows(batch_db, "SELECT provider, status, items, succeeded FROM judge_batches") == [
        (api, "ended", ITEMS, ITEMS)
    ]
    custom_ids = [row[0] for row in _rows(batch_db, "SELECT custom_id FROM judge_batch_items")]
    assert len(custom_ids) == ITEMS and all(re.fullmatch(r"q0-[0-9a-f]{40}", c) for c in custom_ids)
    live_requests, live_tokens, live_cost = _judge_cost(live_db)
    requests, tokens, cost = _judge_cost(batch_db)
    assert (requests, tokens) == (live_requests, live_tokens)
    assert cost == pytest.approx(live_cost / 2)  # the shipped batch prices: half the list price
    assert f"batches: 1 submitted ({ITEMS} items)" in batch.stdout
    assert f"${cost:,.4f} at the batch price" in batch.stdout
    assert any("submitted batch" in line for line in error_lines(batch))
    stats = rapport_in_process("stats", "--db", str(batch_db), env=ENV)
    assert stats.returncode == 0 and MODELS[api] in stats.stdout


@SLOW
@pytest.mark.parametrize("api", APIS)
def test_failed_and_expired_items_go_into_the_next_batch(api, db):
    settings = FakeProviderSettings(replies=(YES,), batch_fail_first=2, batch_expire_first=1)
    with running_fake_provider(settings) as (base_url, state):
        result = _judge(db, _spec(api, base_url), "--batch")
    assert result.returncode == 0, result.stderr
    assert state.batches_created == 2
    assert state.batch_items_failed == 2 and state.batch_items_expired == 1
    assert sorted(state.batch_submissions.values()) == [1] * (ITEMS - 3) + [2] * 3
    assert _rows(db, "SELECT count(*) FROM assessments") == [(CONVERSATIONS,)]
    assert _rows(db, "SELECT count(*) FROM judge_failures") == [(0,)]
    assert _rows(
        db, "SELECT status, count(*) FROM judge_batch_items GROUP BY ALL ORDER BY ALL"
    ) == [("answered", ITEMS), ("expired", 1), ("failed", 2)]
    assert _judge_cost(db)[0] == ITEMS + 3  # every item's outcome counted once


@SLOW
def test_items_failing_every_round_are_judge_failures_asked_afresh_next_run(db):
    with running_fake_provider(FakeProviderSettings(batch_fail_rate=1.0)) as (base_url, state):
        failed = _judge(db, _spec("openai", base_url), "--batch")
    assert failed.returncode != 0
    assert state.batches_created == 3  # the first batch and two more rounds, then it gives up
    assert set(state.batch_submissions.values()) == {3}
    assert _rows(db, "SELECT count(*) FROM assessments") == [(0,)]
    ((failures, error),) = _rows(db, "SELECT count(*), any_value(error) FROM judge_failures")
    assert failures == ITEMS and error.startswith("backend: batch item failed")
    # another seed: a new fake numbers its batches from 1 again, and its ids follow the seed
    fresh = FakeProviderSettings(replies=(YES,), seed=1)
    with running_fake_provider(fresh) as (base_url, state):
        again = _judge(db, _spec("openai", base_url), "--batch")
    assert again.returncode == 0, again.stderr
    assert state.batch_items == ITEMS  # asked afresh: the failed outcomes are not reused
    assert _rows(db, "SELECT count(*) FROM assessments") == [(CONVERSATIONS,)]


@SLOW
@pytest.mark.parametrize("api", APIS)
def test_an_invalid_reply_is_retried_once_in_the_next_batch(api, db):
    # the first item's reply is not JSON; every later reply (the retry's too) is valid
    settings = FakeProviderSettings(replies=(BAD, *(YES,) * ITEMS))
    with running_fake_provider(settings) as (base_url, state):
        result = _judge(db, _spec(api, base_url), "--batch")
    assert result.returncode == 0, result.stderr
    assert state.batches_created == 2 and state.batch_items == ITEMS + 1
    assert _rows(db, "SELECT attempt, count(*) FROM judge_batch_items GROUP BY ALL ORDER BY 1") == [
        (0, ITEMS),
        (1, 1),
    ]
    assert _rows(db, "SELECT answer, count(*) FROM verdicts GROUP BY ALL") == [("YES", ITEMS)]


@SLOW
def test_an_invalid_retry_is_a_judge_failure_as_live(db):
    with running_fake_provider(FakeProviderSettings(replies=(BAD,))) as (base_url, state):
        result = _judge(db, _spec("openai", base_url), "--batch")
    assert result.returncode != 0
    assert state.batches_created == 2 and state.batch_items == 2 * ITEMS
    ((failures, error),) = _rows(db, "SELECT count(*), any_value(error) FROM judge_failures")
    assert failures == ITEMS and error.startswith("invalid judge output:")


@SLOW
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_run_reattaches_to_its_batch_and_submits_nothing_twice(stop, db):
    clock = ManualClock()
    settings = FakeProviderSettings(replies=(YES,), batch_delay_s=60.0)
    with running_fake_provider(settings, clock=clock) as (base_url, state):
        spec = _spec("anthropic", base_url)
        process = subprocess.Popen(
            [sys.executable, "-m", "rapport", "judge", "--db", str(db), "--judge", spec,
             "--batch", "--quiet"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **ENV},
        )  # fmt: skip
        try:
            assert process.stderr is not None
            for line in process.stderr:  # the batch is recorded before this line is printed
                if "submitted batch" in line:
                    break
            else:
                pytest.fail("the judge run ended without submitting a batch")
            process.send_signal(stop)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode != 0
        assert state.batches_created == 1 and state.batch_items == ITEMS
        assert _rows(db, "SELECT status, items FROM judge_batches") == [("submitted", ITEMS)]
        clock.now += 60.0  # the batch ends while nobody waits for it
        again = _judge(db, spec, "--batch")
    assert again.returncode == 0, again.stderr
    assert state.batches_created == 1  # re-attached, not submitted again
    assert set(state.batch_submissions.values()) == {1}
    assert any("re-attached to batch" in line for line in error_lines(again))
    assert "1 re-attached" in again.stdout
    assert _rows(db, "SELECT status, succeeded FROM judge_batches") == [("ended", ITEMS)]
    assert _rows(db, "SELECT count(*) FROM assessments") == [(CONVERSATIONS,)]
    assert _judge_cost(db)[0] == ITEMS  # the re-attaching run collects and counts them


def test_judges_without_a_batch_api_are_refused_with_one_line(db, tmp_path):
    before = _rows(db, "SELECT count(*) FROM runs")
    result = rapport_in_process("judge", "--db", str(db), "--judge", "simulated", "--batch")
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "--batch" in line and "simulated has no batch API" in line
    config = tmp_path / "run.yaml"
    config.write_text(
        json.dumps({"judges": [{"id": "local", "backend": {"provider": "null"}, "batch": True}]})
    )
    result = rapport_in_process("judge", "--db", str(db), "--config", str(config))
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "judges[0].batch" in line and "null has no batch API" in line
    result = rapport_in_process(
        "judge", "--db", str(db), "--judge", "openai:gpt-4o-mini@http://127.0.0.1:9/v1",
        "--batch", env={**ENV, "RAPPORT_BATCH_POLL_S": "soon"},
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "RAPPORT_BATCH_POLL_S" in line
    assert _rows(db, "SELECT count(*) FROM runs") == before  # nothing was written


@SLOW
def test_answered_items_are_never_sent_again(db):
    """Replies recorded before the verdicts reached the store (a kill in between): the next
    run makes its verdicts from the stored replies and submits nothing."""
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        spec = _spec("openai", base_url)
        assert _judge(db, spec, "--batch").returncode == 0
        judged = _verdicts(db)
        with duckdb.connect(str(db)) as conn:  # as if the run died before writing its verdicts
            conn.execute("DELETE FROM assessments; DELETE FROM verdicts")
        again = _judge(db, spec, "--batch")
    assert again.returncode == 0, again.stderr
    assert state.batches_created == 1 and state.requests == 0
    assert _verdicts(db) == judged
    assert _rows(db, "SELECT count(*) FROM assessments") == [(CONVERSATIONS,)]


@SLOW
def test_batch_true_sends_only_that_judge_through_the_batch_api(db, tmp_path):
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):

        def judge(judge_id: str, model: str, batch: bool) -> dict[str, object]:
            backend = {"provider": "openai", "model": model, "base_url": base_url}
            return {"id": judge_id, "backend": backend, "batch": batch}

        config = tmp_path / "run.yaml"
        config.write_text(
            json.dumps(
                {"judges": [judge("cheap", "gpt-4o-mini", True), judge("live", "gpt-4o", False)]}
            )
        )
        result = rapport_in_process("judge", "--db", str(db), "--config", str(config), env=ENV)
    assert result.returncode == 0, result.stderr
    assert state.batch_items == ITEMS and state.requests == ITEMS  # one judge each way
    assert _rows(db, "SELECT DISTINCT judge_id FROM judge_batch_items") == [("cheap",)]
    assert _rows(db, "SELECT judge_id, count(*) FROM assessments GROUP BY ALL ORDER BY 1") == [
        ("cheap", CONVERSATIONS),
        ("live", CONVERSATIONS),
    ]


@SLOW
def test_a_batch_the_provider_no_longer_knows_is_let_go_and_its_items_asked_again(db):
    from datetime import UTC, datetime

    from rapport.store.batches import BatchItemRow, BatchRecord, record_batch

    forgotten = BatchRecord(
        "batch_forgotten", "openai:gpt-4o-mini", "openai", "gpt-4o-mini", 1, "r0",
        datetime.now(UTC),
    )  # fmt: skip
    with duckdb.connect(str(db)) as conn:  # an open batch a killed run left, then deleted
        record_batch(conn, forgotten, [BatchItemRow("q0-gone", "c0", ("x",), 0, 0)])
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        result = _judge(db, _spec("openai", base_url), "--batch")
    assert result.returncode == 0, result.stderr
    assert any("batch_forgotten is gone" in line for line in error_lines(result))
    assert state.batches_created == 1 and state.batch_items == ITEMS
    assert _rows(db, "SELECT batch_id, status FROM judge_batches WHERE status = 'lost'") == [
        ("batch_forgotten", "lost")
    ]
    assert _rows(db, "SELECT status, count(*) FROM judge_batches GROUP BY ALL ORDER BY 1") == [
        ("ended", 1),
        ("lost", 1),
    ]
    assert _rows(db, "SELECT count(*) FROM assessments") == [(CONVERSATIONS,)]


@SLOW
def test_long_transcripts_are_judged_over_windows_as_live(tmp_path):
    live_db, batch_db = tmp_path / "live.duckdb", tmp_path / "batch.duckdb"
    made = rapport_in_process(
        "generate", "--db", str(live_db), "--count", "2", "--turns", "8",
        "--domain", str(TINY_DOMAIN), "--backend", "simulated", "--quiet",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shutil.copy(live_db, batch_db)
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        config = tmp_path / "run.yaml"
        backend = {"provider": "anthropic", "model": "claude-haiku-4-5"}
        backend["base_url"] = base_url.removesuffix("/v1")
        # the smallest window budget (200 tokens): every transcript here is longer
        judge = {"id": "windowed", "backend": backend, "context_tokens": 1000}
        config.write_text(json.dumps({"judges": [judge]}))
        live = rapport_in_process("judge", "--db", str(live_db), "--config", str(config), env=ENV)
        assert live.returncode == 0, live.stderr
        live_calls = state.requests
        batch = rapport_in_process(
            "judge", "--db", str(batch_db), "--config", str(config), "--batch", env=ENV
        )
        assert batch.returncode == 0, batch.stderr
    questions = _rows(live_db, "SELECT count(*) FROM verdicts")[0][0]
    assert live_calls > questions  # more than one window per question
    assert state.batch_items == live_calls
    assert _rows(batch_db, "SELECT max(window_index) FROM judge_batch_items")[0][0] >= 1
    assert _verdicts(batch_db) == _verdicts(live_db)


@SLOW
def test_generate_leaves_batch_judges_to_rapport_judge(tmp_path, db_path):
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        backend = {"provider": "openai", "model": "gpt-4o-mini", "base_url": base_url}
        config = tmp_path / "run.yaml"
        config.write_text(
            json.dumps(
                {
                    "judges": [
                        {"id": "batched", "backend": backend, "batch": True},
                        {"id": "local", "backend": {"provider": "simulated"}},
                    ]
                }
            )
        )
        made = rapport_in_process(
            "generate", "--db", str(db_path), "--count", str(CONVERSATIONS), "--turns",
            str(EXCHANGES), "--domain", str(TINY_DOMAIN), "--backend", "simulated",
            "--config", str(config), "--quiet", env=ENV,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert state.requests == 0 and state.batches_created == 0  # nothing paid at full price
        assert _rows(db_path, "SELECT DISTINCT judge_id FROM assessments") == [("local",)]
        judged = rapport_in_process("judge", "--db", str(db_path), "--config", str(config), env=ENV)
    assert judged.returncode == 0, judged.stderr
    assert state.requests == 0 and state.batch_items == ITEMS
    assert _rows(db_path, "SELECT judge_id, count(*) FROM assessments GROUP BY ALL ORDER BY 1") == [
        ("batched", CONVERSATIONS),
        ("local", CONVERSATIONS),
    ]
