"""Verdicts for the simulated backend's judge mode: valid JSON, deterministic, and dependent on
the scenario (more flaws and harder topics make NO more likely). Labelled simulated."""

from __future__ import annotations

import random

import msgspec

from config.domain import Domain
from config.scenario import Scenario

NA_RATE = 0.08
GATE_YES_RATE = 0.98
FLAW_PENALTY = 0.04
HARD_TOPIC_PENALTY = 0.03


def _yes_rate(scenario: Scenario, quality: float) -> float:
    hard = sum(topic.difficulty == "hard" for topic in scenario.topics)
    return max(0.0, quality - FLAW_PENALTY * len(scenario.flaws) - HARD_TOPIC_PENALTY * hard)


def _answer(
    domain: Domain, scenario: Scenario, criterion_id: str, quality: float, rng: random.Random
) -> str:
    criterion = next((c for c in domain.rubric.criteria if c.id == criterion_id), None)
    if criterion is not None and criterion.gate:
        return "YES" if rng.random() < GATE_YES_RATE else "NO"
    if criterion is not None and criterion.na_valid and rng.random() < NA_RATE:
        return "NA"
    return "YES" if rng.random() < _yes_rate(scenario, quality) else "NO"


def write_verdicts(
    domain: Domain,
    scenario: Scenario,
    criteria: tuple[str, ...],
    quality: float,
    rng: random.Random,
) -> str:
    """One criterion: `{"reasoning", "answer"}`; several: `{"verdicts": [...]}`."""
    answers = [(cid, _answer(domain, scenario, cid, quality, rng)) for cid in criteria]
    reasoning = "(simulated judge) verdict drawn from the scenario, not read from the transcript"
    if len(answers) == 1:
        return msgspec.json.encode({"reasoning": reasoning, "answer": answers[0][1]}).decode()
    return msgspec.json.encode(
        {
            "verdicts": [
                {"criterion_id": cid, "reasoning": reasoning, "answer": a} for cid, a in answers
            ]
        }
    ).decode()
