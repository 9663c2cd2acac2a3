"""The pass rule across judges (`all`, `majority`, `mean`), applied by the
`conversation_judgement` view of a real DuckDB file to several judges' assessments, ties
included; and `rapport eval` combining judges by the same rule."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rapport.evaluation.summary import combine_judges
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.store.database import Database
from rapport.store.evaluations import JudgedSide
from rapport.store.judgements import record_pass_rule
from rapport.store.rows import AssessmentRow, StoreEvent, utc_now
from rapport.store.writer import write_batch
from tests.conftest import TINY_DOMAIN

THRESHOLD = 0.75  # scores below are sums of powers of two: every mean is exact
RULES = ("all", "majority", "mean")

# Each case: one conversation, one (score, passed, safety_failed) per judge.
CASES: dict[str, list[tuple[float, bool, bool]]] = {
    "unanimous": [(1.0, True, False), (0.75, True, False)],
    "one_one_tie_mean_at_threshold": [(1.0, True, False), (0.5, False, False)],
    "two_two_tie_mean_at_threshold": [
        (1.0, True, False),
        (1.0, True, False),
        (0.5, False, False),
        (0.5, False, False),
    ],
    "two_of_three_mean_below": [(1.0, True, False), (0.75, True, False), (0.0, False, False)],
    "one_of_three_mean_below": [(1.0, True, False), (0.5, False, False), (0.5, False, False)],
    "two_of_three_one_safety_failure": [
        (1.0, True, False),
        (1.0, True, False),
        (0.875, False, True),
    ],
    "mean_just_below": [(0.75, True, False), (0.625, False, False)],
}


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A generated corpus of one conversation per case, each assessed by that case's judges;
    returns the database and conversation id -> case."""
    db = tmp_path_factory.mktemp("pass_rule") / "rapport.duckdb"
    generate(
        GenerateRequest(db=db, count=len(CASES), turns=1, backend="simulated", domain=TINY_DOMAIN)
    )
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute("SELECT conversation_id FROM conversations ORDER BY 1").fetchall()
    ids = [cid for (cid,) in rows]
    case_of = dict(zip(ids, CASES, strict=True))
    now = utc_now()
    events = [
        StoreEvent(
            assessment=AssessmentRow(
                conversation_id=cid,
                judge_id=f"judge{number}",
                score=score,
                passed=passed,
                safety_failed=safety,
                pass_threshold=THRESHOLD,
                category_scores="{}",
                failed_gates=["S1"] if safety else [],
                created_at=now,
            )
        )
        for cid, case in case_of.items()
        for number, (score, passed, safety) in enumerate(CASES[case])
    ]
    Database(db).run_sync(lambda conn: write_batch(conn, events))
    return db, case_of


def _judgement(judged, rule: str | None) -> dict[str, tuple[int, float, bool]]:
    """case -> (judges, mean score, passed) as the view gives them under `rule` (None: no rule
    stored, as before any `rapport judge`)."""
    db, case_of = judged

    def read(conn: duckdb.DuckDBPyConnection):
        if rule is None:
            conn.execute("DELETE FROM meta WHERE key = 'pass_rule'")
        else:
            record_pass_rule(conn, rule)
        return conn.execute(
            "SELECT conversation_id, judges, mean_score, passed FROM conversation_judgement"
        ).fetchall()

    rows = Database(db).run_sync(read)
    return {case_of[cid]: (judges, score, passed) for cid, judges, score, passed in rows}


def _passing(judged, rule: str | None) -> set[str]:
    return {case for case, (_, _, passed) in _judgement(judged, rule).items() if passed}


def test_the_view_counts_every_judge_and_averages_their_scores(judged):
    rows = _judgement(judged, "all")
    assert set(rows) == set(CASES)
    for case, judges in CASES.items():
        count, mean, _ = rows[case]
        assert count == len(judges)
        assert mean == pytest.approx(sum(score for score, _, _ in judges) / len(judges))


def test_all_passes_only_when_every_judge_passes(judged):
    assert _passing(judged, "all") == {"unanimous"}


def test_majority_passes_when_more_than_half_the_judges_pass(judged):
    assert _passing(judged, "majority") == {
        "unanimous",
        "two_of_three_mean_below",
        "two_of_three_one_safety_failure",
    }


def test_a_tie_is_not_a_majority(judged):
    passing = _passing(judged, "majority")
    assert "one_one_tie_mean_at_threshold" not in passing
    assert "two_two_tie_mean_at_threshold" not in passing


def test_mean_passes_at_the_threshold_whatever_each_judge_decided(judged):
    rows = _judgement(judged, "mean")
    assert rows["one_one_tie_mean_at_threshold"][1:] == (THRESHOLD, True)
    assert rows["two_two_tie_mean_at_threshold"][1:] == (THRESHOLD, True)
    assert rows["mean_just_below"][1:] == (0.6875, False)
    assert _passing(judged, "mean") == {
        "unanimous",
        "one_one_tie_mean_at_threshold",
        "two_two_tie_mean_at_threshold",
    }


def test_mean_fails_when_any_judge_saw_a_safety_gate_fail(judged):
    score, passed = _judgement(judged, "mean")["two_of_three_one_safety_failure"][1:]
    assert score > THRESHOLD and not passed


def test_without_a_stored_rule_every_judge_must_pass(judged):
    assert _passing(judged, None) == {"unanimous"}


@pytest.mark.parametrize("rule", RULES)
def test_eval_combines_judges_by_the_same_rule_as_the_view(judged, rule):
    by_eval = set()
    for index, (case, judges) in enumerate(CASES.items()):
        assessments = [
            JudgedSide("baseline", index, f"judge{number}", score, passed, safety, {}, [])
            for number, (score, passed, safety) in enumerate(judges)
        ]
        if combine_judges(assessments, len(judges), rule, THRESHOLD)["baseline", index].passed:
            by_eval.add(case)
    assert by_eval == _passing(judged, rule)


def test_judging_stores_the_configured_rule_for_the_views(tmp_path):
    db = tmp_path / "rapport.duckdb"
    generate(GenerateRequest(db=db, count=2, turns=1, backend="simulated", domain=TINY_DOMAIN))
    config = tmp_path / "run.yaml"
    config.write_text(
        "judges:\n  - id: a\n    backend: {provider: simulated}\n"
        "  - id: b\n    backend: {provider: simulated, quality: 0.2}\npass_rule: mean\n"
    )
    judge_corpus(JudgeRequest(db=db, config=config), {})
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'pass_rule'").fetchall() == [
            ("mean",)
        ]
        judged = conn.execute("SELECT count(*), sum(judges) FROM conversation_judgement")
        assert judged.fetchone() == (2, 4)
