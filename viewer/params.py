"""The list page's query string as a `ListQuery`: a value out of shape is a `BadParameter` (the
page answers 400 naming it), never an error deeper down."""

from __future__ import annotations

import math
from collections.abc import Mapping

from rapport.store.viewer_reads import SORTS, ListQuery

MAX_PAGE = 1_000_000
MAX_PER_PAGE = 500
MAX_TEXT = 200
CONFUSION = ("criterion", "answered_by", "person", "judge_answer")  # one matrix cell, together
KNOWN = frozenset(
    {
        "status", "passed", "score_min", "score_max", "topic", "flaw", "persona", "judge",
        "failed", "q", "reviewed", "simulator", "sort", "order", "page", "per_page",
        "criterion", "answered_by", "person", "judge_answer",
    }
)  # fmt: skip


class BadParameter(ValueError):
    """A query parameter the page cannot use; its text names it."""


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if len(value) > MAX_TEXT:
        raise BadParameter(f"{name}: longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise BadParameter(f"{name}: holds a NUL character")
    return value or None


def _number(query: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    text = _text(query, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadParameter(f"{name}: not a number: {text!r}") from None
    if math.isnan(value) or not low <= value <= high:
        raise BadParameter(f"{name}: must be between {low:g} and {high:g}")
    return value


def _whole(query: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    text = _text(query, name)
    if text is None:
        return default
    if not text.isdigit():
        raise BadParameter(f"{name}: not a whole number: {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise BadParameter(f"{name}: must be between {low} and {high}")
    return value


def list_query(query: Mapping[str, str]) -> ListQuery:
    unknown = sorted(set(query) - KNOWN)
    if unknown:
        raise BadParameter(f"unknown parameter {unknown[0]!r}")
    passed = _text(query, "passed")
    if passed not in (None, "yes", "no"):
        raise BadParameter("passed: must be yes or no")
    reviewed = _text(query, "reviewed")
    if reviewed not in (None, "yes", "no"):
        raise BadParameter("reviewed: must be yes or no")
    simulator = _text(query, "simulator")
    if simulator not in (None, "failed", "passed"):
        raise BadParameter("simulator: must be failed or passed")
    persona = _text(query, "persona")
    if persona is not None and "=" not in persona:
        raise BadParameter("persona: must be attribute=value")
    sort = _text(query, "sort") or "id"
    if sort not in SORTS:
        raise BadParameter(f"sort: must be one of {', '.join(SORTS)}")
    order = _text(query, "order") or "asc"
    if order not in ("asc", "desc"):
        raise BadParameter("order: must be asc or desc")
    low = _number(query, "score_min", 0.0, 1.0)
    high = _number(query, "score_max", 0.0, 1.0)
    if low is not None and high is not None and low > high:
        raise BadParameter("score_min: above score_max")
    attribute, _, value = (persona or "").partition("=")
    cell = tuple(_text(query, name) for name in CONFUSION)
    return ListQuery(
        status=_text(query, "status"),
        passed=None if passed is None else passed == "yes",
        score_min=low,
        score_max=high,
        topic=_text(query, "topic"),
        flaw=_text(query, "flaw"),
        persona=(attribute, value) if persona is not None else None,
        judge=_text(query, "judge"),
        failed=_text(query, "failed"),
        text=_text(query, "q"),
        reviewed=None if reviewed is None else reviewed == "yes",
        simulator_failed=None if simulator is None else simulator == "failed",
        confusion=_confusion(cell),
        sort=sort,
        descending=order == "desc",
        page=_whole(query, "page", 1, MAX_PAGE, 1),
        per_page=_whole(query, "per_page", 1, MAX_PER_PAGE, 50),
    )


def _confusion(cell: tuple[str | None, ...]) -> tuple[str, str, str, str] | None:
    """A judge-vs-people matrix cell: its four parameters come together or not at all."""
    if all(value is None for value in cell):
        return None
    if any(value is None for value in cell):
        raise BadParameter(f"{', '.join(CONFUSION)}: give all four (a judge-vs-people cell)")
    criterion, judge, person, said = cell
    for name, answer in (("person", person), ("judge_answer", said)):
        if answer not in ("YES", "NO", "NA"):
            raise BadParameter(f"{name}: must be YES, NO or NA")
    return (criterion, judge, person, said)  # type: ignore[return-value]
