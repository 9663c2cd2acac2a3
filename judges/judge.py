"""One judge over one conversation: every applicable criterion answered YES / NO / NA as
validated JSON. Invalid output is retried once with the problem fed back; after that (or when
the backend fails) the criterion is recorded as a judge failure, never scored by default."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import msgspec

from rapport.config.constants import CHARS_PER_TOKEN_ESTIMATE
from rapport.config.domain import Criterion, Domain
from rapport.config.run import JudgeConfig
from rapport.config.scenario import Scenario
from rapport.config.sides import Side, rubric_for
from rapport.engine.errors import TurnFailed
from rapport.engine.gateway import Gateway
from rapport.engine.types import ChatMessage, CompletionParams, SimulationHints
from rapport.judges.prompting import (
    PROMPT_OVERHEAD_TOKENS,
    RETRY_INSTRUCTION,
    describe_plan,
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
                messages = retry_prompt(messages, completion.text, problem)
    return None, f"invalid judge output: {problem}"


def retry_prompt(messages: Sequence[ChatMessage], reply: str, problem: str) -> list[ChatMessage]:
    """The prompt again with the invalid reply and what was wrong with it (the one retry)."""
    return [
        *messages,
        ChatMessage("assistant", reply),
        ChatMessage("user", RETRY_INSTRUCTION.format(problem=problem)),
    ]


def _combine(answers: list[CriterionAnswer]) -> CriterionAnswer:
    """Across windows: NO if any window says NO, else YES if any says YES, else NA."""
    for wanted in ("NO", "YES"):
        found = [a for a in answers if a.answer == wanted]
        if found:
            return CriterionAnswer(" | ".join(a.reasoning for a in found), found[0].answer)
    return CriterionAnswer(" | ".join(a.reasoning for a in answers), "NA")


class Question(msgspec.Struct, frozen=True):
    """What a judge is asked about one conversation in one go: criteria (one, or all of them
    in `batched` mode), the call's parameters, and a prompt per window of the transcript."""

    criteria: tuple[str, ...]
    params: CompletionParams
    prompts: tuple[list[ChatMessage], ...]

    def parse(self, text: str) -> dict[str, CriterionAnswer]:
        """The reply's answer per criterion; JudgeOutputError when it is not valid."""
        if len(self.criteria) > 1:
            return parse_batched_answers(text, list(self.criteria))
        return {self.criteria[0]: parse_criterion_answer(text)}


def questions(
    judge: Judge,
    domain: Domain,
    scenario: Scenario,
    messages: Sequence[Turn],
    only: set[str] | None = None,
    side: Side = "assistant",
) -> list[Question]:
    """The questions for every applicable criterion of `side`'s rubric (or those in `only`),
    in the rubric's order: the same prompts whether they are asked live or through a batch
    API."""
    exchanges = sum(turn.role == "assistant" for turn in messages)
    rubric = rubric_for(domain, scenario, side)
    if rubric is None:
        return []
    criteria = [c for c in active_criteria(rubric, exchanges) if only is None or c.id in only]
    if not criteria:
        return []
    plan = describe_plan(domain, scenario, messages) if side == "user" else ""
    config = judge.config
    budget = None
    if config.context_tokens is not None:
        overhead = PROMPT_OVERHEAD_TOKENS + int(len(plan) / CHARS_PER_TOKEN_ESTIMATE)
        budget = max(200, config.context_tokens - config.max_tokens - overhead)
    parts = windows(messages, budget)
    stats = transcript_stats(messages)
    groups: list[list[Criterion]] = (
        [criteria] if config.mode == "batched" else [[c] for c in criteria]
    )
    asked = []
    for group in groups:
        ids = tuple(c.id for c in group)
        params = CompletionParams(
            max_tokens=config.max_tokens * (len(group) if len(group) > 1 else 1),
            temperature=JUDGE_TEMPERATURE,
            json_schema=batched_schema(list(ids)) if len(group) > 1 else criterion_schema(),
            hints=SimulationHints("judge", scenario, domain, exchanges, exchanges, True, ids, side),
        )
        prompts = tuple(
            judge_messages(domain, group, stats, part, exchanges, side, plan) for part in parts
        )
        asked.append(Question(ids, params, prompts))
    return asked


def verdicts_of(
    question: Question, answers: Sequence[dict[str, CriterionAnswer]], failure: str | None
) -> list[Verdict]:
    """A question's verdicts from its windows' answers (combined), or its failure for each."""
    if failure is not None:
        return [Verdict(cid, None, error=failure) for cid in question.criteria]
    verdicts = []
    for cid in question.criteria:
        combined = _combine([window[cid] for window in answers if cid in window])
        verdicts.append(Verdict(cid, combined.answer, combined.reasoning))
    return verdicts


async def judge_conversation(
    judge: Judge,
    domain: Domain,
    scenario: Scenario,
    messages: Sequence[Turn],
    only: set[str] | None = None,
    side: Side = "assistant",
) -> list[Verdict]:
    """Verdicts for every applicable criterion of `side` (or those in `only`), failures
    included."""
    asked = questions(judge, domain, scenario, messages, only, side)
    answered: list[list[Verdict]] = [[] for _ in asked]

    async def ask(position: int, question: Question) -> None:
        windows_answered: list[dict[str, CriterionAnswer]] = []
        failure: str | None = None
        for prompt in question.prompts:
            parsed, failure = await _ask(judge.gateway, prompt, question.params, question.parse)
            if parsed is not None:
                windows_answered.append(parsed)
            if failure is not None:
                break
        answered[position] = verdicts_of(question, windows_answered, failure)

    # The criteria are independent questions: asked at once, the judge's gateway keeps to its
    # own limits; the verdicts keep the rubric's order.
    async with anyio.create_task_group() as tasks:
        for position, question in enumerate(asked):
            tasks.start_soon(ask, position, question)
    return [verdict for question_verdicts in answered for verdict in question_verdicts]
