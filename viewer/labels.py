"""Words for what the store names in snake_case, and figures written as people read them
(thousands separators, percentages, money): one place, so every page's tables, charts and
filters say the same thing the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A column's label on a page; a column not named here has its underscores turned to spaces.
COLUMNS: Mapping[str, str] = {
    "status": "status",
    "conversations": "conversations",
    "complete": "complete",
    "mean_exchanges": "mean exchanges",
    "topic_category": "topic",
    "flaw": "flaw",
    "role": "role",
    "messages": "messages",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "prompt_tokens": "input tokens",
    "completion_tokens": "output tokens",
    "cache_read": "cache-read tokens",
    "cache_write": "cache-write tokens",
    "cache_read_share": "cache share of input",
    "cost_usd": "cost",
    "usd_per_1k_messages": "cost per 1,000 messages",
    "gateway": "gateway",
    "roles": "roles",
    "requests": "requests",
    "retries": "retries",
    "429s": "rate-limited (429)",
    "failed": "failed",
    "p50_ms": "median latency (ms)",
    "p99_ms": "p99 latency (ms)",
    "pass_rate": "pass rate",
    "mean_score": "mean score",
    "safety_failures": "gate failures",
    "gate_failures": "gate failures",
    "attribute": "persona attribute",
    "value": "value",
    "judged": "judged",
    "shown_rate": "shown",
    "na_rate": "not applicable",
    "verdicts": "verdicts",
    "criterion_id": "criterion",
    "judge_id": "judge",
    "reviewer_a": "reviewer",
    "reviewer_b": "other reviewer",
    "reviews": "reviews",
    "reviewers": "reviewers",
    "percent_agreement": "agreement",
    "kappa": "Cohen's κ",
    "eval_id": "evaluation",
    "domain": "domain",
    "baseline": "baseline",
    "candidate": "candidate",
    "scenarios": "scenarios",
    "judges": "judges",
    "pass_rule": "pass rule",
    "updated_at": "updated",
    "created_at": "made",
    "iteration": "round",
    "count": "conversations",
    "pass_rate_delta": "pass rate change",
    "mean_score_delta": "mean score change",
    "distinct_2": "distinct-2",
    "distinct_2_delta": "distinct-2 change",
}
PERCENT_COLUMNS = frozenset(
    {"pass_rate", "cache_read_share", "shown_rate", "na_rate", "percent_agreement",
     "pass_rate_delta", "yes_rate", "no_rate"}
)  # fmt: skip
WORD_COLUMNS = frozenset({"topic_category", "flaw", "status", "role", "attribute", "end_reason"})
MONEY_COLUMNS = frozenset({"cost_usd", "usd_per_1k_messages"})
NO_PRICE = "— no price"  # a cost of NULL: no message of it had a price

# The conversations list's filters, as a person reads them (the URL keeps the short names).
FILTERS: Mapping[str, str] = {
    "status": "Status",
    "passed": "Verdict",
    "score_min": "Score from",
    "score_max": "Score up to",
    "topic": "Topic",
    "flaw": "Flaw",
    "persona": "Persona",
    "judge": "Judged by",
    "failed": "Failed criterion or gate",
    "q": "Text in a message",
    "reviewed": "Reviewed",
    "simulator": "User side",
    "sort": "Sort by",
    "order": "Order",
    "criterion": "Criterion",
    "answer_judge": "Judge",
    "person": "Person said",
    "judge_said": "Judge said",
}


def column(name: str) -> str:
    return COLUMNS.get(name, name.replace("_", " "))


def words(value: str) -> str:
    """A stored name (a topic category, a flaw, a status) as words: `life_transitions` →
    `life transitions`. Links and filters keep the stored name."""
    return value.replace("_", " ")


def whole(value: int) -> str:
    return f"{value:,}"


def percent(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"
    return text.removesuffix(".0") + " %"


def money(value: float | None) -> str:
    if value is None:
        return NO_PRICE
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:,.4f}"


def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}".removesuffix(".0")


def cell(name: str, value: Any) -> str:
    """One table cell's text: money and shares as such, whole numbers with separators, a
    missing value as a dash (a missing cost says why)."""
    if name in MONEY_COLUMNS:
        return money(value)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in PERCENT_COLUMNS and isinstance(value, int | float):
        return percent(value, signed=name.endswith("_delta"))
    if isinstance(value, int):
        return whole(value)
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return words(str(value)) if name in WORD_COLUMNS else str(value)
