"""Checks of the user simulator's turns that need no model, run as each turn is stored (the
user actor calls `check_user_turn`), so even an unjudged corpus shows where its users broke
character. Each check that fires gives its id and the few words that made it fire.

Cheap by design (it runs once per user turn, in the conversation's own task): plain string and
set work, and the checks that compare turns skip turns too short to mean anything."""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from rapport.config.constants import (
    CHECK_EVIDENCE_CHARS,
    COPY_SPAN_WORDS,
    WORD_LIMIT_BREAK_FACTOR,
)
from rapport.config.domain import SimulatorChecks
from rapport.config.phrases import find_phrase, normalise
from rapport.engine.text_overlap import repeated_turn, shared_span, words

_QUESTION = re.compile(r"[^.!?]*\?")
_TO_THE_OTHER = re.compile(r"(?<![a-z0-9'])(?:you|your|you're|u)(?![a-z0-9'])")


class CheckHit(msgspec.Struct, frozen=True):
    check_id: str
    evidence: str  # the words that made it fire, short


def check_user_turn(
    text: str,
    *,
    previous_reply: str | None,
    earlier_turns: Iterable[str],
    word_limit: int,
    phrases: SimulatorChecks,
) -> tuple[CheckHit, ...]:
    """Every check that fires on one user turn. `previous_reply` is the assistant's turn it
    answers (None for the first), `earlier_turns` the user's own earlier turns (read only when
    this turn is long enough to count as a repeat), `word_limit` the persona's most words."""
    normalised = normalise(text)
    hits: list[CheckHit] = []
    mine = words(text)
    if previous_reply is not None and len(mine) >= COPY_SPAN_WORDS:
        span = shared_span(mine, words(previous_reply), COPY_SPAN_WORDS)
        if span is not None:
            start, length = span
            copied = " ".join(mine[start : start + length])
            hits.append(CheckHit("copies_assistant", _short(f"{length} words: {copied}")))
    disclosed = find_phrase(phrases.disclosure_phrases, normalised)
    if disclosed is not None:
        hits.append(CheckHit("discloses_ai", disclosed))
    reversed_roles = _speaks_as_assistant(normalised, phrases)
    if reversed_roles is not None:
        hits.append(CheckHit("speaks_as_assistant", reversed_roles))
    count = len(text.split())
    if count > WORD_LIMIT_BREAK_FACTOR * word_limit:
        hits.append(
            CheckHit("over_word_limit", f"{count} words; the persona's limit is {word_limit}")
        )
    repeated = repeated_turn(text, earlier_turns)
    if repeated is not None:
        evidence = f"user turn {repeated} again: " + " ".join(mine)
        hits.append(CheckHit("repeats_itself", _short(evidence)))
    return tuple(hits)


def _speaks_as_assistant(normalised: str, phrases: SimulatorChecks) -> str | None:
    """The assistant's wording plus the assistant's shape: a question to the other side and
    advice. One phrase alone is not enough ("have you tried turning it off?" is a user's)."""
    if "?" not in normalised:  # no question to the other side: decided without a pattern
        return None
    phrase = find_phrase(phrases.assistant_phrases, normalised)
    if phrase is None:
        return None
    questions = [q.strip() for q in _QUESTION.findall(normalised) if _TO_THE_OTHER.search(q)]
    if not questions:
        return None
    advice = find_phrase(phrases.advice_phrases, normalised)
    if advice is None:
        return None
    return _short(f'"{phrase}", advice "{advice}", question "{questions[0]}"')


def _short(text: str) -> str:
    if len(text) <= CHECK_EVIDENCE_CHARS:
        return text
    return text[: CHECK_EVIDENCE_CHARS - 1].rstrip() + "…"
