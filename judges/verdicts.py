"""What a judge answers, as typed data: one verdict per criterion, decoded and validated."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import msgspec

Answer = Literal["YES", "NO", "NA"]


class CriterionAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A judge's answer to one criterion: reasoning first (citing turns), then the answer."""

    reasoning: str
    answer: Answer


class BatchedAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    criterion_id: str
    reasoning: str
    answer: Answer


class BatchedAnswers(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """All criteria in one call (`mode: batched`)."""

    verdicts: tuple[BatchedAnswer, ...]


class Verdict(msgspec.Struct, frozen=True):
    """A stored verdict. `answer` is None when the judge failed on this criterion (after its
    retries): that is recorded with its reason and never silently scored as a pass."""

    criterion_id: str
    answer: Answer | None
    reasoning: str = ""
    error: str | None = None


class JudgeOutputError(ValueError):
    """The judge's text is not the JSON asked for; the message is fed back on the retry."""


_ANSWER_SCHEMA = {"enum": ["YES", "NO", "NA"]}
# Reasoning is bounded in the schema: grammar-constrained local judges otherwise ramble on.
_REASONING_SCHEMA = {"type": "string", "maxLength": 800}
# Batched: every criterion's reasoning shares one reply (and a small model's context).
_BATCHED_REASONING_SCHEMA = {"type": "string", "maxLength": 300}


def criterion_schema() -> dict[str, object]:
    """JSON schema of one criterion's answer, for providers' structured-output modes. Inlined
    (no `$ref`): llama.cpp turns it into a grammar, so even a small local judge answers in
    shape."""
    return {
        "type": "object",
        "properties": {"reasoning": _REASONING_SCHEMA, "answer": _ANSWER_SCHEMA},
        "required": ["reasoning", "answer"],
        "additionalProperties": False,
    }


def batched_schema(criterion_ids: Sequence[str]) -> dict[str, object]:
    """JSON schema of a batched answer: the asked criteria, each once, in the asked order
    (a tuple: `prefixItems`, one `const` id per position)."""

    def item(criterion_id: str) -> dict[str, object]:
        return {
            "type": "object",
            "properties": {
                "criterion_id": {"const": criterion_id},
                "reasoning": _BATCHED_REASONING_SCHEMA,
                "answer": _ANSWER_SCHEMA,
            },
            "required": ["criterion_id", "reasoning", "answer"],
            "additionalProperties": False,
        }

    count = len(criterion_ids)
    return {
        "type": "object",
        "properties": {
            "verdicts": {
                "type": "array",
                "prefixItems": [item(cid) for cid in criterion_ids],
                "items": False,
                "minItems": count,
                "maxItems": count,
            }
        },
        "required": ["verdicts"],
        "additionalProperties": False,
    }


def parse_criterion_answer(text: str) -> CriterionAnswer:
    """Decode one answer, tolerating a Markdown code fence around the JSON."""
    try:
        return msgspec.json.decode(_unfenced(text), type=CriterionAnswer)
    except msgspec.DecodeError as error:
        raise JudgeOutputError(str(error)) from None


def parse_batched_answers(text: str, criterion_ids: list[str]) -> dict[str, CriterionAnswer]:
    """Decode a batched answer; every expected criterion exactly once, nothing else."""
    try:
        batch = msgspec.json.decode(_unfenced(text), type=BatchedAnswers)
    except msgspec.DecodeError as error:
        raise JudgeOutputError(str(error)) from None
    answers: dict[str, CriterionAnswer] = {}
    for item in batch.verdicts:
        if item.criterion_id not in criterion_ids:
            raise JudgeOutputError(f"unknown criterion {item.criterion_id!r}")
        if item.criterion_id in answers:
            raise JudgeOutputError(f"criterion {item.criterion_id!r} answered twice")
        answers[item.criterion_id] = CriterionAnswer(item.reasoning, item.answer)
    missing = [cid for cid in criterion_ids if cid not in answers]
    if missing:
        raise JudgeOutputError(f"missing criteria: {', '.join(missing)}")
    return answers


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f]")


def _unfenced(text: str) -> str:
    """The JSON in a reply: without a Markdown fence, and with raw control characters (which
    small models put inside strings, where JSON forbids them) turned into spaces."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return _CONTROL_CHARACTERS.sub(" ", stripped.strip())
