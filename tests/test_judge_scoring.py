"""Rubric scoring, judge output validation and transcript statistics."""

from __future__ import annotations

import pytest

from rapport.judges.scoring import score
from rapport.judges.transcript_stats import transcript_stats
from rapport.judges.verdicts import (
    JudgeOutputError,
    Verdict,
    parse_batched_answers,
    parse_criterion_answer,
)
from rapport.store.reads import Turn


def _verdicts(answers: dict[str, str | None]) -> dict[str, Verdict]:
    return {cid: Verdict(cid, answer) for cid, answer in answers.items()}  # type: ignore[arg-type]


ALL_YES = {
    cid: "YES"
    for cid in [
        "CQ1",
        "CQ2",
        "CQ3",
        "CQ6",
        "CP2",
        "CP4",
        "CP5",
        "CP6",
        "MT1",
        "MT2",
        "MT3",
        "MT6",
        "MT4",
        "MT5",
        "MT7",
        "CQ8",
        "CQ9",
    ]
}


def test_all_yes_scores_one_and_passes(therapy):
    result = score(therapy.rubric, _verdicts(ALL_YES), exchanges=20)
    assert result.score == pytest.approx(1.0) and result.passed and not result.safety_failed
    assert "CP7" not in result.assessed  # optional criterion, off by default


def test_hand_computed_case_with_na_errors_and_minimum_turns(therapy):
    answers = {**ALL_YES, "CQ1": "NA", "CQ2": "NA", "CP5": "NO", "MT2": None, "CQ9": "NA"}
    result = score(therapy.rubric, _verdicts(answers), exchanges=2)
    # MT4 and MT7 need 3 exchanges: left out. CQ1's NA counts 0, CQ2's NA counts 1, MT2's
    # judge error counts 0. comprehension .5, connection 1, naturalness .75, multi_topic .75,
    # context_use 1 (MT5 only): .15*.5 + .2 + .15*.75 + .3*.75 + .2 = .8125
    assert result.category_scores == pytest.approx(
        {
            "comprehension": 0.5,
            "connection": 1.0,
            "naturalness": 0.75,
            "multi_topic": 0.75,
            "context_use": 1.0,
        }
    )
    assert result.score == pytest.approx(0.8125)
    assert result.passed and not result.safety_failed
    assert (
        "MT4" not in result.assessed and "MT7" not in result.assessed and "MT5" in result.assessed
    )


def test_a_category_with_no_assessed_criteria_scores_one(therapy):
    result = score(therapy.rubric, _verdicts(ALL_YES), exchanges=1)
    assert result.category_scores["context_use"] == 1.0  # MT4, MT5, MT7 all need more turns


@pytest.mark.parametrize(
    ("gate", "answer"), [("CQ8", "NO"), ("CQ8", "NA"), ("CQ8", None), ("CQ9", "NO")]
)
def test_a_failed_safety_gate_fails_the_conversation(therapy, gate, answer):
    result = score(therapy.rubric, _verdicts({**ALL_YES, gate: answer}), exchanges=20)
    assert result.score == pytest.approx(1.0)
    assert result.safety_failed and not result.passed and result.failed_gates == (gate,)


def test_crisis_gate_na_is_valid(therapy):
    result = score(therapy.rubric, _verdicts({**ALL_YES, "CQ9": "NA"}), exchanges=20)
    assert result.passed


def test_below_threshold_fails_without_a_gate(therapy):
    answers = {**ALL_YES, "MT1": "NO", "MT2": "NO", "MT3": "NO"}  # multi_topic .25 → .775
    result = score(therapy.rubric, _verdicts(answers), exchanges=20)
    assert result.score == pytest.approx(0.775) and not result.passed and not result.safety_failed


def test_scoring_is_not_wired_to_therapy(tiny):
    result = score(tiny.rubric, _verdicts({"A1": "YES", "C1": "NA", "S1": "YES"}), exchanges=3)
    assert result.score == pytest.approx(1.0) and result.passed
    failed = score(tiny.rubric, _verdicts({"A1": "NA", "C1": "YES", "S1": "YES"}), exchanges=3)
    assert failed.score == pytest.approx(0.4) and not failed.passed  # A1's NA is not valid


def test_parse_one_answer_and_its_errors():
    assert parse_criterion_answer('{"reasoning": "turn 3 ...", "answer": "YES"}').answer == "YES"
    assert parse_criterion_answer('```json\n{"reasoning": "r", "answer": "NA"}\n```').answer == "NA"
    for bad in (
        '{"answer": "YES"}',
        '{"reasoning": "r", "answer": "MAYBE"}',
        "not json",
        '{"reasoning": "r", "answer": "YES", "extra": 1}',
    ):
        with pytest.raises(JudgeOutputError):
            parse_criterion_answer(bad)


def test_parse_batched_answers_needs_every_criterion_once():
    good = '{"verdicts": [{"criterion_id": "A1", "reasoning": "r", "answer": "YES"}, {"criterion_id": "S1", "reasoning": "r", "answer": "NO"}]}'
    assert {k: v.answer for k, v in parse_batched_answers(good, ["A1", "S1"]).items()} == {
        "A1": "YES",
        "S1": "NO",
    }
    with pytest.raises(JudgeOutputError, match="missing criteria: S1"):
        parse_batched_answers(
            '{"verdicts": [{"criterion_id": "A1", "reasoning": "r", "answer": "YES"}]}',
            ["A1", "S1"],
        )
    with pytest.raises(JudgeOutputError, match="unknown criterion"):
        parse_batched_answers(good, ["A1"])


def test_transcript_statistics():
    messages = [
        Turn("user", "one two three four"),
        Turn("assistant", "That sounds hard. What happened?"),
        Turn("user", "a b"),
        Turn("assistant", "That sounds hard to carry every single day of the week."),
    ]
    stats = transcript_stats(messages)
    assert stats.exchanges == 2
    assert stats.share_ending_in_question == pytest.approx(0.5)
    assert (
        stats.most_common_opener == "that sounds hard"
        and stats.share_with_most_common_opener == 1.0
    )
    assert (
        stats.max_length_ratio == pytest.approx(11 / 2)
        and stats.share_over_twice_user_length == 0.5
    )
