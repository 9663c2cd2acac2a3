"""Judging over real HTTP against the fake provider with canned JSON verdicts; idempotent
re-runs; agreement between judges as a SQL view; windows for long transcripts."""

from __future__ import annotations

import duckdb
import pytest

from rapport.config.backend_settings import LlamaCppConfig
from rapport.config.run import JudgeConfig
from rapport.engine.gateway import GatewayLimits
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.judges.judge import Judge
from rapport.judges.panel import judging_concurrency
from rapport.judges.prompting import windows
from rapport.judges.verdicts import parse_criterion_answer
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.store.database import Database
from rapport.store.reads import Turn
from rapport.store.rows import StoreEvent, VerdictRow, utc_now
from rapport.store.writer import write_batch
from tests.conftest import TINY_DOMAIN, rapport

KEY_ENV = "RAPPORT_JUDGE_KEY"
YES = '{"reasoning": "exchange 1 shows it", "answer": "YES"}'
NO = '{"reasoning": "exchange 2 does not", "answer": "NO"}'


def _corpus(db, count=4, turns=3, domain=TINY_DOMAIN):
    generate(GenerateRequest(db=db, count=count, turns=turns, backend="simulated", domain=domain))


def _judge_config(
    tmp_path,
    base_url: str,
    mode: str = "per_criterion",
    context: int | None = None,
    in_flight: int | None = None,
):
    extra = f"\n    context_tokens: {context}" if context else ""
    limit = f"      max_in_flight: {in_flight}\n" if in_flight else ""
    path = tmp_path / "judges.yaml"
    path.write_text(
        "judges:\n  - id: http\n    mode: " + mode + extra + "\n    backend:\n"
        f"      provider: openai\n      model: judge-model\n      base_url: {base_url}\n"
        f"      api_key_env: {KEY_ENV}\n      max_retries: 0\n" + limit
    )
    return path


def _rows(db, sql: str):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_valid_verdicts_over_http_are_stored_and_scored(tmp_path, db_path):
    _corpus(db_path)
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        summary = judge_corpus(
            JudgeRequest(db=db_path, config=_judge_config(tmp_path, base_url)), {KEY_ENV: "k"}
        )
    assert summary.judged == 4 and summary.assessed == 4 and summary.failed_criteria == 0
    assert state.completed == 4 * 3  # one call per criterion (A1, C1, S1)
    assert _rows(db_path, "SELECT DISTINCT answer FROM verdicts") == [("YES",)]
    assert _rows(
        db_path,
        "SELECT count(*), min(score), bool_and(passed), bool_or(safety_failed) FROM assessments",
    ) == [(4, 1.0, True, False)]
    asked = "\n".join(state.prompts)
    for part in (
        "### A1",
        "### C1",
        "### S1 (safety gate)",
        "## Facts computed from the transcript",
    ):
        assert part in asked
    assert "MECHANIC:" in asked and "RIDER:" in asked  # the transcript, with the domain's roles


def test_malformed_output_is_retried_with_the_error_fed_back(tmp_path, db_path):
    _corpus(db_path, count=1)
    # The three criteria are asked at once; one request at a time keeps the replies' order:
    # the three first answers malformed, the three retries valid.
    replies = ("this is not json",) * 3 + (YES,) * 3
    with running_fake_provider(FakeProviderSettings(replies=replies)) as (base_url, state):
        config = _judge_config(tmp_path, base_url, in_flight=1)
        summary = judge_corpus(JudgeRequest(db=db_path, config=config), {KEY_ENV: "k"})
    assert summary.failed_criteria == 0 and summary.assessed == 1
    assert state.completed == 3 * 2  # every criterion needed its one retry
    assert any("not valid" in prompt for prompt in state.prompts)


@pytest.mark.parametrize(
    "reply",
    [
        "not json at all",
        '{"reasoning": "r", "answer": "MAYBE"}',  # wrong enum
        '{"answer": "YES"}',  # reasoning missing
    ],
)
def test_invalid_output_becomes_a_recorded_failure_then_a_rerun_completes(tmp_path, db_path, reply):
    _corpus(db_path, count=2)
    with running_fake_provider(FakeProviderSettings(replies=(reply,))) as (base_url, _):
        failed = judge_corpus(
            JudgeRequest(db=db_path, config=_judge_config(tmp_path, base_url)), {KEY_ENV: "k"}
        )
    assert failed.failed_criteria == 2 * 3 and failed.assessed == 0
    assert _rows(db_path, "SELECT count(*) FROM verdicts") == [(0,)]  # never scored by default
    assert _rows(db_path, "SELECT count(*) FROM judge_failures") == [(6,)]
    with running_fake_provider(FakeProviderSettings(replies=(NO,))) as (base_url, state):
        again = judge_corpus(
            JudgeRequest(db=db_path, config=_judge_config(tmp_path, base_url)), {KEY_ENV: "k"}
        )
    assert again.assessed == 2 and state.completed == 6
    assert _rows(db_path, "SELECT bool_and(safety_failed), bool_or(passed) FROM assessments") == [
        (True, False)
    ]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (
            '{"verdicts": [{"criterion_id": "A1", "reasoning": "r", "answer": "YES"}]}',
            "missing criteria",
        ),
        (
            '{"verdicts": [{"criterion_id": "A1", "reasoning": "r", "answer": "YES"}, '
            '{"criterion_id": "C1", "reasoning": "r", "answer": "YES"}, '
            '{"criterion_id": "S1", "reasoning": "r", "answer": "YES"}, '
            '{"criterion_id": "Z9", "reasoning": "r", "answer": "YES"}]}',
            "unknown criterion",
        ),
    ],
)
def test_batched_mode_validates_the_whole_set(tmp_path, db_path, reply, problem):
    _corpus(db_path, count=1)
    with running_fake_provider(FakeProviderSettings(replies=(reply,))) as (base_url, state):
        summary = judge_corpus(
            JudgeRequest(db=db_path, config=_judge_config(tmp_path, base_url, mode="batched")),
            {KEY_ENV: "k"},
        )
    assert state.completed == 2  # one call for all criteria, one retry
    assert summary.failed_criteria == 3
    errors = _rows(db_path, "SELECT DISTINCT error FROM judge_failures")
    assert len(errors) == 1 and problem in errors[0][0]


def test_batched_mode_answers_all_criteria_in_one_call(tmp_path, db_path):
    _corpus(db_path, count=2)
    reply = (
        '{"verdicts": [{"criterion_id": "A1", "reasoning": "r", "answer": "YES"}, '
        '{"criterion_id": "C1", "reasoning": "r", "answer": "NA"}, '
        '{"criterion_id": "S1", "reasoning": "r", "answer": "YES"}]}'
    )
    with running_fake_provider(FakeProviderSettings(replies=(reply,))) as (base_url, state):
        summary = judge_corpus(
            JudgeRequest(db=db_path, config=_judge_config(tmp_path, base_url, mode="batched")),
            {KEY_ENV: "k"},
        )
    assert state.completed == 2 and summary.assessed == 2
    assert _rows(db_path, "SELECT min(score) FROM assessments") == [(1.0,)]


def test_long_transcripts_are_judged_in_windows_not_cut(tmp_path, db_path):
    _corpus(db_path, count=1, turns=6)
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        judge_corpus(
            JudgeRequest(db=db_path, config=_judge_config(tmp_path, base_url, context=950)),
            {KEY_ENV: "k"},
        )
    assert state.completed > 3  # several windows per criterion
    assert any("judged in windows" in prompt for prompt in state.prompts)


def test_windows_cover_every_exchange_with_overlap():
    messages = [Turn("user", "u" * 400), Turn("assistant", "a" * 400)] * 6  # 200 tokens each
    parts = windows(messages, budget_tokens=450)
    firsts = [first for first, _ in parts]
    assert firsts[0] == 1 and len(parts) > 1
    covered = set()
    for first, part in parts:
        covered |= set(range(first, first + len(part) // 2))
    assert covered == set(range(1, 7))
    assert windows(messages, budget_tokens=None) == [(1, messages)]


@pytest.mark.slow
def test_rerunning_judge_is_idempotent(db_path):
    _corpus(db_path, count=6)
    first = rapport("judge", "--db", str(db_path), "--judge", "simulated")
    assert first.returncode == 0, first.stderr
    before = _rows(db_path, "SELECT count(*), sum(hash(reasoning)) FROM verdicts")
    second = rapport("judge", "--db", str(db_path), "--judge", "simulated")
    assert "judged 0 conversation-judge pairs" in second.stdout
    assert _rows(db_path, "SELECT count(*), sum(hash(reasoning)) FROM verdicts") == before


def test_agreement_view_matches_cohens_kappa(db_path):
    _corpus(db_path, count=10, turns=2)
    ids = [row[0] for row in _rows(db_path, "SELECT conversation_id FROM conversations ORDER BY 1")]
    first = ["YES"] * 6 + ["NO"] * 4
    second = ["YES"] * 5 + ["NO"] * 4 + ["YES"]
    now = utc_now()
    rows = [
        VerdictRow(cid, "a", "A1", answer, "", "m", now)
        for cid, answer in zip(ids, first, strict=True)
    ]
    rows += [
        VerdictRow(cid, "b", "A1", answer, "", "m", now)
        for cid, answer in zip(ids, second, strict=True)
    ]
    database = Database(db_path)
    database.run_sync(lambda conn: write_batch(conn, [StoreEvent(verdicts=tuple(rows))]))
    # 8 of 10 agree; each judge says YES 6 times: chance (6·6 + 4·4) / 100 = .52
    ((items, percent, kappa),) = _rows(
        db_path,
        "SELECT items, percent_agreement, kappa FROM judge_agreement WHERE criterion_id = 'A1'",
    )
    assert items == 10 and percent == pytest.approx(0.8)
    assert kappa == pytest.approx((0.8 - 0.52) / (1 - 0.52), abs=1e-4)


@pytest.mark.slow
def test_generate_judges_as_conversations_complete_and_report_writes_files(tmp_path, db_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "judges:\n  - id: lenient\n    backend: {provider: simulated}\n"
        "  - id: strict\n    backend: {provider: simulated, quality: 0.5}\n    mode: batched\n"
        "pass_rule: majority\n"
    )
    result = rapport(
        "generate",
        "--db",
        str(db_path),
        "--count",
        "20",
        "--backend",
        "simulated",
        "--config",
        str(config),
    )
    assert result.returncode == 0, result.stderr
    assert _rows(db_path, "SELECT judge_id, count(*) FROM assessments GROUP BY 1 ORDER BY 1") == [
        ("lenient", 20),
        ("strict", 20),
    ]
    assert _rows(db_path, "SELECT count(*) FROM conversation_judgement") == [(20,)]
    stats = rapport("stats", "--db", str(db_path))
    for title in (
        "Pass rate by topic",
        "Pass rate by persona attribute",
        "Judge agreement per criterion",
    ):
        assert title in stats.stdout
    out = tmp_path / "report"
    report = rapport("report", "--db", str(db_path), "--out", str(out))
    assert report.returncode == 0, report.stderr
    assert (out / "report.md").read_text().count("## ") > 10
    assert (out / "score_distribution.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.serial  # llama.cpp in process: its threads spin, beside another worker they crawl
def test_the_default_judge_is_the_embedded_model_with_json_grammar(db_path):
    import llama_cpp  # noqa: F401  (a required dependency: without it this test fails)

    _corpus(db_path, count=1, turns=2)
    result = rapport("judge", "--db", str(db_path), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "llamacpp:SmolLM2" in result.stdout
    # The grammar holds the small model to the schema: every criterion gets a valid answer.
    verdicts = _rows(db_path, "SELECT criterion_id, answer FROM verdicts ORDER BY 1")
    assert [criterion for criterion, _ in verdicts] == ["A1", "C1", "S1"]
    assert {answer for _, answer in verdicts} <= {"YES", "NO", "NA"}
    assert _rows(db_path, "SELECT count(*) FROM judge_failures") == [(0,)]
    assert _rows(db_path, "SELECT count(*) FROM assessments") == [(1,)]


def test_local_judges_take_a_few_conversations_at_a_time(tiny):
    class _Gateway:
        def __init__(self, cap):
            self.limits = GatewayLimits(max_in_flight=cap)

    local = Judge(JudgeConfig(id="a", backend=LlamaCppConfig()), _Gateway(1))
    remote = Judge(JudgeConfig(id="b", backend=LlamaCppConfig()), _Gateway(None))
    assert judging_concurrency([local], 200) == 2
    assert judging_concurrency([local, remote], 200) == 200
    assert judging_concurrency([local], 1) == 1


def test_raw_control_characters_in_a_judges_json_are_read_as_spaces():
    answer = parse_criterion_answer('{"reasoning": "turn 2\nturn\t3", "answer": "NO"}')
    assert (answer.reasoning, answer.answer) == ("turn 2 turn 3", "NO")
