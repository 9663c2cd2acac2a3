"""Judge prompts: the domain's judge instructions, one criterion (or all), the statistics
computed in code, and the transcript (or a window of it when it would not fit)."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.config.constants import CHARS_PER_TOKEN_ESTIMATE
from rapport.config.domain import Criterion, Domain
from rapport.engine.types import ChatMessage
from rapport.judges.transcript_stats import TranscriptStats
from rapport.store.reads import Turn

ANSWER_FORMAT = (
    'Reply with JSON only: an object with "reasoning" (a short explanation that cites exchange '
    'numbers, written first) and "answer" (exactly "YES", "NO" or "NA").'
)
BATCHED_FORMAT = (
    'Reply with JSON only: an object with "verdicts", a list with one object per criterion, each '
    'with "criterion_id", "reasoning" (short, citing exchange numbers, written first) and '
    '"answer" (exactly "YES", "NO" or "NA").'
)
RETRY_INSTRUCTION = "That reply was not valid: {problem}. Reply again with the JSON only."
PROMPT_OVERHEAD_TOKENS = 600


def describe_criterion(criterion: Criterion) -> str:
    kind = "safety gate" if criterion.gate else f"category {criterion.category}"
    if criterion.na_valid:
        na = f"NA is allowed when {criterion.na_when}" if criterion.na_when else "NA is allowed"
    else:
        na = "NA is not a valid answer here"
    return f"### {criterion.id} ({kind})\n{criterion.question}\n({na}.)"


def render_transcript(domain: Domain, messages: Sequence[Turn], first_exchange: int) -> str:
    names = {
        "user": domain.info.roles.user.upper(),
        "assistant": domain.info.roles.assistant.upper(),
    }
    lines = []
    exchange = first_exchange
    for turn in messages:
        lines.append(f"[{exchange}] {names.get(turn.role, turn.role.upper())}: {turn.content}")
        if turn.role == "assistant":
            exchange += 1
    return "\n\n".join(lines)


def windows(messages: Sequence[Turn], budget_tokens: int | None) -> list[tuple[int, list[Turn]]]:
    """The transcript as (first exchange, messages) windows that each fit the budget; one
    window when it fits or no budget is set. Windows overlap by one exchange for context."""

    def tokens(part: Sequence[Turn]) -> float:
        return sum(len(turn.content) for turn in part) / CHARS_PER_TOKEN_ESTIMATE

    if budget_tokens is None or tokens(messages) <= budget_tokens:
        return [(1, list(messages))]
    exchanges = [list(messages[i : i + 2]) for i in range(0, len(messages), 2)]
    result: list[tuple[int, list[Turn]]] = []
    start = 0
    while start < len(exchanges):
        end = start + 1
        while (
            end < len(exchanges)
            and tokens([m for e in exchanges[start : end + 1] for m in e]) <= budget_tokens
        ):
            end += 1
        result.append((start + 1, [m for e in exchanges[start:end] for m in e]))
        if end >= len(exchanges):
            break
        start = max(end - 1, start + 1)
    return result


def judge_messages(
    domain: Domain,
    criteria: Sequence[Criterion],
    stats: TranscriptStats,
    window: tuple[int, list[Turn]],
    total_exchanges: int,
) -> list[ChatMessage]:
    first, part = window
    last = first + (len(part) + 1) // 2 - 1
    scope = (
        f"the whole conversation ({total_exchanges} exchanges)"
        if first == 1 and last >= total_exchanges
        else f"exchanges {first}-{last} of {total_exchanges} (judged in windows: it is long)"
    )
    body = [
        "## Criteria" if len(criteria) > 1 else "## Criterion",
        "\n\n".join(describe_criterion(c) for c in criteria),
        "## Facts computed from the transcript (exact)",
        stats.describe(),
        f"## Transcript: {scope}",
        render_transcript(domain, part, first),
        BATCHED_FORMAT if len(criteria) > 1 else ANSWER_FORMAT,
    ]
    return [ChatMessage("system", domain.prompts.judge), ChatMessage("user", "\n\n".join(body))]
