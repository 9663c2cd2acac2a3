"""Fault drills against the fake provider over real HTTP: rate limits, server errors, hangs,
malformed bodies, kills, a provider that is down, missing and leaking keys."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.generate import GenerateRequest, generate
from rapport.store.database import connect
from tests.conftest import rapport

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README

KEY_ENV = "RAPPORT_DRILL_KEY"
SECRET = "sk-drill-9d8c7b6a5f4e3d2c1b0a"
FAULTS = FakeProviderSettings(
    fault_429=0.10, fault_500=0.05, fault_hang=0.02, fault_malformed=0.01,
    hang_s=3.0, retry_after_ms=10, reply_tokens=20, seed=7,
)  # fmt: skip


def _config(path: Path, base_url: str) -> Path:
    role = (
        f"{{provider: openai, model: drill, base_url: '{base_url}', api_key_env: {KEY_ENV}, "
        "timeout_s: 0.5, max_retries: 12, backoff_min_s: 0.01, backoff_max_s: 0.1, max_tokens: 40, "
        "rpm: 60000}"  # a configured limit: these drills are about faults, not learned limits
    )
    path.write_text(f"backends:\n  user_sim: {role}\n  assistant: {role}\n")
    return path


def _check_corpus(db: Path, count: int, turns: int) -> None:
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM conversations WHERE status = 'complete'"
        ).fetchone() == (count,)
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (count * turns * 2,)
        gaps = conn.execute(
            "SELECT count(*) FROM (SELECT conversation_id, max(turn_index) + 1 - count(*) AS gap "
            "FROM messages GROUP BY 1) WHERE gap <> 0"
        ).fetchone()
        assert gaps == (0,)


def test_thousand_conversations_survive_every_kind_of_fault(tmp_path):
    db = tmp_path / "drill.duckdb"
    with running_fake_provider(FAULTS) as (base_url, state):
        summary = generate(
            GenerateRequest(
                db=db, count=1000, turns=2, max_active=300,
                config=_config(tmp_path / "run.yaml", base_url),
            ),
            environ={KEY_ENV: SECRET},
        )  # fmt: skip
    assert summary.complete == 1000 and summary.failed == 0
    assert state.injected_429 > 100 and state.server_errors > 50
    assert state.hangs > 10 and state.malformed > 0
    _check_corpus(db, 1000, 2)
    with duckdb.connect(str(db), read_only=True) as conn:
        requests, retries, limited, timeouts = conn.execute(
            "SELECT sum(requests), sum(retries), sum(rate_limited), sum(timeouts) FROM gateway_stats"
        ).fetchone()
    assert retries >= state.injected_429 + state.server_errors
    # Every 429 the provider sent is counted as one, or, when the client had already given up on
    # that call (300 conversations on two busy cores), as one timeout beyond the hangs'.
    assert limited <= state.injected_429
    assert state.hangs + (state.injected_429 - limited) <= timeouts
    assert requests >= state.requests  # a call may time out before the provider reads it
    assert SECRET.encode() not in db.read_bytes()


def _messages(db: Path) -> int:
    if not db.exists():
        return 0
    conn = connect(db, read_only=True)
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except duckdb.Error:
        return 0
    finally:
        conn.close()


def test_sigkill_three_times_during_a_faulty_run_then_finish(tmp_path):
    db = tmp_path / "killed.duckdb"
    count, turns = 300, 3
    rng = random.Random(42)
    with running_fake_provider(FAULTS) as (base_url, _):
        config = _config(tmp_path / "run.yaml", base_url)
        argv = [
            sys.executable, "-m", "rapport", "generate", "--db", str(db), "--count", str(count),
            "--turns", str(turns), "--config", str(config), "--max-active", "50", "--quiet",
        ]  # fmt: skip
        env = {**os.environ, KEY_ENV: SECRET}
        for _ in range(3):
            process = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            before = _messages(db)
            deadline = time.monotonic() + 60
            while _messages(db) <= before and time.monotonic() < deadline:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        assert _messages(db) < count * turns * 2, "the run finished before the kills"
        finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    _check_corpus(db, count, turns)
    for output in (finished.stdout, finished.stderr):
        assert SECRET not in output


def test_a_provider_that_is_down_stops_the_run_with_one_line(tmp_path):
    db = tmp_path / "down.duckdb"
    result = rapport(
        "generate", "--db", str(db), "--count", "5", "--turns", "2",
        "--backend", "openai:some-model@http://127.0.0.1:9/v1",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr  # nothing could be done (cli.exit_codes)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach" in lines[0], result.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM conversations").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    # Nothing was lost: the same plan completes once a working backend is given.
    again = rapport(
        "generate", "--db", str(db), "--count", "5", "--turns", "2", "--backend", "simulated"
    )
    assert again.returncode == 0, again.stderr
    assert "5/5 complete" in again.stdout


@pytest.mark.parametrize(
    ("spec", "variable"),
    [("openai:gpt-4o-mini", "OPENAI_API_KEY"), ("anthropic:claude-haiku-4-5", "ANTHROPIC_API_KEY")],
)
def test_missing_api_key_is_one_line_before_any_work(tmp_path, spec, variable):
    db = tmp_path / "nokey.duckdb"
    env = {name: value for name, value in os.environ.items() if not name.endswith("_API_KEY")}
    result = subprocess.run(
        [sys.executable, "-m", "rapport", "generate", "--db", str(db), "--count", "3", "--backend", spec],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{variable} is not set" in lines[0]
    assert not db.exists()


def test_api_key_never_reaches_the_database_or_the_output(tmp_path):
    db = tmp_path / "secret.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=10)) as (base_url, state):
        config = _config(tmp_path / "run.yaml", base_url)
        result = rapport(
            "generate", "--db", str(db), "--count", "10", "--turns", "2", "--config", str(config),
            env={KEY_ENV: SECRET},
        )  # fmt: skip
        stats = rapport("stats", "--db", str(db))
        dump = rapport("sql", "--db", str(db), "SELECT * FROM runs", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert state.authorization == {f"Bearer {SECRET}"}  # the key was used...
    for text in (result.stdout, result.stderr, stats.stdout, dump.stdout):
        assert SECRET not in text  # ...and appears nowhere else
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
