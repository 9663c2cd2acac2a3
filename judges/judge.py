"""One judge over one conversation: every applicable criterion answered YES / NO / NA as
validated JSON. Invalid output is retried once with the problem fed back; after that (or when
the backend fails) the criterion is recorded as a judge failure, never scored by default."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import msgspec

from rapport.config.domain import Criterion, Domain
from rapport.config.run import JudgeConfig
from rapport.config.scenario import Scenario
from rapport.engine.errors import TurnFailed
from rapport.engine.gateway import Gateway
from rapport.engine.types import ChatMessage, CompletionParams, SimulationHints
from rapport.judges.prompting import (
    PROMPT_OVERHEAD_TOKENS,
    RETRY_INSTRUCTION,
    judge_messages,
    windows,
)
from rapport.judges.scoring import active_criteria
from rapport.judges.transcript_stats import transcript_stats
from rapport.judges.verdicts import (
    CriterionAnswer,
    JudgeOutputError,
    Verdict,
    batched_schema,
    criterion_schema,
    parse_batched_answers,
    parse_criterion_answer,
)
from rapport.store.reads import Turn

T = TypeVar("T")
JUDGE_TEMPERATURE = 0.0


class Judge(msgspec.Struct, frozen=True):
    """A judge ready to run: its settings and the gateway of its backend."""

    config: JudgeConfig
    gateway: Gateway

    @property
    def id(self) -> str:
        return self.config.id


async def _ask(
    gateway: Gateway,
    messages: list[ChatMessage],
    params: CompletionParams,
    parse: Callable[[str], T],
) -> tuple[T | None, str | None]:
    """One answer, with one retry that feeds the parse error back."""
    for attempt in range(2):
        try:
            completion = await gateway.complete(messages, params)
        except TurnFailed as error:
            return None, f"backend: {error}"
        try:
            return parse(completion.text), None
        except JudgeOutputError as error:
            problem = str(error)
            if attempt == 0:
                messages = [
                    *messages,
                    ChatMessage("assistant", completion.text),
                    ChatMessage("user", RETRY_INSTRUCTION.format(problem=problem)),
                ]
    return None, f"invalid judge output: {problem}"


def _combine(answers: list[CriterionAnswer]) -> CriterionAnswer:
    """Across windows: NO if any window says NO, else YES if any says YES, else NA."""
    for wanted in ("NO", "YES"):
        found = [a for a in answers if a.answer == wanted]
        if found:
            return CriterionAnswer(" | ".join(a.reasoning for a in found), found[0].answer)
    return CriterionAnswer(" | ".join(a.reasoning for a in answers), "NA")


async def judge_conversation(
    judge: Judge,
    domain: Domain,
    scenario: Scenario,
    messages: Sequence[Turn],
    only: set[str] | None = None,
) -> list[Verdict]:
    """Verdicts for every applicable criterion (or those in `only`), failures included."""
    exchanges = sum(turn.role == "assistant" for turn in messages)
    criteria = [
        c for c in active_criteria(domain.rubric, exchanges) if only is None or c.id in only
    ]
    if not criteria:
        return []
    config = judge.config
    budget = None
    if config.context_tokens is not None:
        budget = max(200, config.context_tokens - config.max_tokens - PROMPT_OVERHEAD_TOKENS)
    parts = windows(messages, budget)
    stats = transcript_stats(messages)
    groups: list[list[Criterion]] = (
        [criteria] if config.mode == "batched" else [[c] for c in criteria]
    )
    answered: list[list[Verdict]] = [[] for _ in groups]

    async def ask_group(position: int, group: list[Criterion]) -> None:
        ids = [c.id for c in group]
        params = CompletionParams(
            max_tokens=config.max_tokens * (len(group) if len(group) > 1 else 1),
            temperature=JUDGE_TEMPERATURE,
            json_schema=batched_schema(ids) if len(group) > 1 else criterion_schema(),
            hints=SimulationHints("judge", scenario, exchanges, exchanges, True, tuple(ids)),
        )
        collected: dict[str, list[CriterionAnswer]] = {cid: [] for cid in ids}
        failure: str | None = None
        for part in parts:
            prompt = judge_messages(domain, group, stats, part, exchanges)
            if len(group) > 1:
                parsed, failure = await _ask(
                    judge.gateway,
                    prompt,
                    params,
                    lambda text, ids=ids: parse_batched_answers(text, ids),
                )
                if parsed is not None:
                    for cid, answer in parsed.items():
                        collected[cid].append(answer)
            else:
                single, failure = await _ask(judge.gateway, prompt, params, parse_criterion_answer)
                if single is not None:
                    collected[ids[0]].append(single)
            if failure is not None:
                break
        for cid in ids:
            if failure is not None:
                answered[position].append(Verdict(cid, None, error=failure))
            else:
                combined = _combine(collected[cid])
                answered[position].append(Verdict(cid, combined.answer, combined.reasoning))

    # The criteria are independent questions: asked at once, the judge's gateway keeps to its
    # own limits; the verdicts keep the rubric's order.
    async with anyio.create_task_group() as tasks:
        for position, group in enumerate(groups):
            tasks.start_soon(ask_group, position, group)
    return [verdict for group_verdicts in answered for verdict in group_verdicts]
