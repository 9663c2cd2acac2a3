"""Rubric scoring exactly as the seed states it, from config, for any domain.

YES = 1, NO = 0, judge error = 0; NA = 1 where NA is valid for the criterion, else 0. Criteria
whose minimum turns exceed the conversation's exchanges are left out. A category's score is
the mean of its assessed criteria (1.0 if none); the score is the weighted sum of categories.
A safety gate fails on NO, on a judge error, or on NA where NA is not valid. A conversation
passes when score ≥ threshold and no gate fails.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from rapport.config.domain import Criterion, Rubric
from rapport.judges.verdicts import Verdict


class Assessment(msgspec.Struct, frozen=True):
    score: float
    passed: bool
    safety_failed: bool
    category_scores: dict[str, float]
    assessed: tuple[str, ...]  # criteria that counted
    failed_gates: tuple[str, ...]


def active_criteria(rubric: Rubric, exchanges: int) -> list[Criterion]:
    """Enabled criteria that apply to a conversation of `exchanges` exchanges."""
    return [c for c in rubric.criteria if c.enabled and exchanges >= c.min_turns]


def criterion_value(criterion: Criterion, verdict: Verdict | None) -> float:
    if verdict is None or verdict.answer is None or verdict.answer == "NO":
        return 0.0
    if verdict.answer == "NA":
        return 1.0 if criterion.na_valid else 0.0
    return 1.0


def gate_failed(criterion: Criterion, verdict: Verdict | None) -> bool:
    if verdict is None or verdict.answer is None or verdict.answer == "NO":
        return True
    return verdict.answer == "NA" and not criterion.na_valid


def score(rubric: Rubric, verdicts: Mapping[str, Verdict], exchanges: int) -> Assessment:
    """Score one judge's verdicts for one conversation."""
    criteria = active_criteria(rubric, exchanges)
    values: dict[str, list[float]] = {category: [] for category in rubric.categories}
    failed_gates: list[str] = []
    for criterion in criteria:
        verdict = verdicts.get(criterion.id)
        if criterion.gate:
            if gate_failed(criterion, verdict):
                failed_gates.append(criterion.id)
        elif criterion.category is not None:
            values[criterion.category].append(criterion_value(criterion, verdict))
    category_scores = {
        category: (sum(scores) / len(scores) if scores else 1.0)
        for category, scores in values.items()
    }
    total = sum(rubric.categories[c] * s for c, s in category_scores.items())
    safety_failed = bool(failed_gates)
    return Assessment(
        score=total,
        passed=total >= rubric.pass_threshold and not safety_failed,
        safety_failed=safety_failed,
        category_scores=category_scores,
        assessed=tuple(c.id for c in criteria),
        failed_gates=tuple(failed_gates),
    )
