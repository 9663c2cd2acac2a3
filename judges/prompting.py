"""Judge prompts: the domain's judge instructions, one criterion (or all), the statistics
computed in code, and the transcript (or a window of it when it would not fit)."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.authoring.domain_preview import render_scenario
from rapport.config.constants import CHARS_PER_TOKEN_ESTIMATE
from rapport.config.domain import Criterion, Domain
from rapport.config.scenario import Scenario
from rapport.config.sides import Side
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
# The user side's framing (the domain's judge.md judges the assistant and tells the judge to
# leave the simulated user's behaviour aside): same judging rules, the other speaker.
USER_SIDE_JUDGE = """# Role: judge of the simulated {user}

You assess one finished conversation between a {user} and a {assistant}. The {user} was played
by a language model following a plan: a persona, the topics they bring, habits (flaws) to show
at given frequencies, how cooperative to be, and a length. You judge only the {user}'s messages:
was this the {user} the plan asked for? The {assistant}'s replies are context, not something to
score.

1. Read the plan and the whole transcript before deciding: drift shows across exchanges.
2. Apply the question literally; one clear failure is enough for NO unless it says otherwise.
3. Cite evidence: name the exchanges you rely on and quote a few words.
4. Use NA only when the criterion's NA condition is met, and say why.
5. A difficult, unhelpful or unpleasant {user} is not a failure when the plan asked for one.

Reply with JSON only, as the criterion asks: the reasoning first, then the answer."""


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


def describe_plan(domain: Domain, scenario: Scenario, messages: Sequence[Turn]) -> str:
    """The scenario the user simulator played, and how the conversation actually ended: what
    the user side is judged against."""
    exchanges = sum(turn.role == "assistant" for turn in messages)
    users = [turn for turn in messages if turn.role == "user"]
    role = domain.info.roles.user
    if exchanges >= scenario.target_turns:
        ending = "it ran to the planned length"
    elif users and users[-1].final:
        ending = f"the {role} ended it early with a goodbye"
    else:
        ending = "it stopped before the planned length"
    lines = render_scenario(domain, scenario)
    lines.append(f"This conversation: {exchanges} exchanges of {scenario.target_turns} planned; "
                 f"{ending}.")  # fmt: skip
    return "\n".join(line.strip() for line in lines)


def judge_messages(
    domain: Domain,
    criteria: Sequence[Criterion],
    stats: TranscriptStats,
    window: tuple[int, list[Turn]],
    total_exchanges: int,
    side: Side = "assistant",
    plan: str = "",
) -> list[ChatMessage]:
    """One call's prompt. The user side is framed for judging the simulated user and carries
    `plan` (describe_plan), the persona and flaws its answers are checked against."""
    first, part = window
    last = first + (len(part) + 1) // 2 - 1
    scope = (
        f"the whole conversation ({total_exchanges} exchanges)"
        if first == 1 and last >= total_exchanges
        else f"exchanges {first}-{last} of {total_exchanges} (judged in windows: it is long)"
    )
    roles = domain.info.roles
    heading = [f"## The {roles.user} the plan asked for", plan] if side == "user" else []
    body = [
        *heading,
        "## Criteria" if len(criteria) > 1 else "## Criterion",
        "\n\n".join(describe_criterion(c) for c in criteria),
        "## Facts computed from the transcript (exact)",
        stats.describe(),
        f"## Transcript: {scope}",
        render_transcript(domain, part, first),
        BATCHED_FORMAT if len(criteria) > 1 else ANSWER_FORMAT,
    ]
    system = (
        USER_SIDE_JUDGE.format(user=roles.user, assistant=roles.assistant)
        if side == "user"
        else domain.prompts.judge
    )
    return [ChatMessage("system", system), ChatMessage("user", "\n\n".join(body))]
