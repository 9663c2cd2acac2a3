"""Verdicts for the simulated backend's judge mode: valid JSON, deterministic, dependent on the
scenario (more flaws and harder topics make NO more likely) and on the transcript (each lapse
reply of a weaker simulated assistant makes NO more likely); the user side's read the user's
turns (simulated_user_judge). Labelled simulated."""

from __future__ import annotations

import random
import zlib

import msgspec

from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.engine.backends.simulated_text import LAPSE_REPLIES
from rapport.engine.backends.simulated_user_judge import user_side_answer

NA_RATE = 0.08
GATE_YES_RATE = 0.98
FLAW_PENALTY = 0.04
HARD_TOPIC_PENALTY = 0.03
LAPSE_PENALTY = 0.7  # YES rate lost when every reply is a lapse (scaled per criterion)
_SENSITIVITY_RANGE = (0.5, 1.5)  # how strongly each criterion reacts to lapses


def lapse_share(domain: Domain, prompt: str) -> float:
    """The share of the assistant's replies in the judged transcript that are lapses."""
    replies = prompt.count(f"] {domain.info.roles.assistant.upper()}: ")
    lapses = sum(prompt.count(lapse) for lapse in LAPSE_REPLIES)
    return min(1.0, lapses / replies) if replies else 0.0


def _sensitivity(criterion_id: str) -> float:
    low, high = _SENSITIVITY_RANGE
    return low + (high - low) * (zlib.crc32(criterion_id.encode()) % 1000) / 999


def _yes_rate(scenario: Scenario, quality: float, criterion_id: str, lapses: float) -> float:
    hard = sum(topic.difficulty == "hard" for topic in scenario.topics)
    rate = quality - FLAW_PENALTY * len(scenario.flaws) - HARD_TOPIC_PENALTY * hard
    return max(0.0, rate - LAPSE_PENALTY * _sensitivity(criterion_id) * lapses)


def _answer(
    domain: Domain,
    scenario: Scenario,
    criterion_id: str,
    quality: float,
    lapses: float,
    rng: random.Random,
) -> str:
    criterion = next((c for c in domain.rubric.criteria if c.id == criterion_id), None)
    draw = rng.random()
    if criterion is not None and criterion.gate:
        return "YES" if draw < GATE_YES_RATE else "NO"
    if criterion is not None and criterion.na_valid and rng.random() < NA_RATE:
        return "NA"
    return "YES" if draw < _yes_rate(scenario, quality, criterion_id, lapses) else "NO"


def write_verdicts(
    domain: Domain,
    scenario: Scenario,
    criteria: tuple[str, ...],
    quality: float,
    rng: random.Random,
    prompt: str = "",
    side: str = "assistant",
) -> str:
    """One criterion: `{"reasoning", "answer"}`; several: `{"verdicts": [...]}`. The user
    side's answers read the user turns (simulated_user_judge)."""
    if side == "user":
        answered = [
            (cid, *user_side_answer(domain, scenario, cid, quality, prompt, rng))
            for cid in criteria
        ]
        answers = [(cid, a, f"(simulated judge) {why}") for cid, a, why in answered]
    else:
        lapses = lapse_share(domain, prompt)
        reasoning = (
            "(simulated judge) verdict drawn from the scenario and the share of generic replies "
            f"({lapses:.2f}), not from reading the transcript"
        )
        answers = [
            (cid, _answer(domain, scenario, cid, quality, lapses, rng), reasoning)
            for cid in criteria
        ]
    if len(answers) == 1:
        _, answer, reasoning = answers[0]
        return msgspec.json.encode({"reasoning": reasoning, "answer": answer}).decode()
    return msgspec.json.encode(
        {
            "verdicts": [
                {"criterion_id": cid, "reasoning": why, "answer": a} for cid, a, why in answers
            ]
        }
    ).decode()
