"""The stages as the public API and the command line both call them: a typed request in, a
summary out, progress shown as `progress` asks, errors as the API's classes. `rapport.Corpus`
builds the requests from keyword arguments, the command line from its flags; both end here.

Each `run_*` works from synchronous code anywhere (see rapport._sync); each `arun_*` is its
awaitable twin for a running event loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from rapport._progress import display_for
from rapport._sync import call_awaitable, call_blocking
from rapport.config.constants import MAX_COUNT, UNTIL_PASSING_DRAW_FACTOR
from rapport.config.errors import BadInput
from rapport.config.shards import WHOLE_PLAN
from rapport.evaluation.summary import EvalSummary
from rapport.stages.estimate import Estimate, estimate_run
from rapport.stages.evaluate import EvalRequest, run_eval
from rapport.stages.generate import GenerateRequest, RunSummary, generate_settings
from rapport.stages.generate import generate as generate_stage
from rapport.stages.judge import JudgeRequest, JudgeSummary, judge_corpus
from rapport.stages.until_estimate import PassingEstimate, estimate_until_passing

T = TypeVar("T")
Say = Callable[[str], None]


def draw_count(count: int | None, until_passing: int | None) -> int:
    """The plan's size: `count` as given; with `until_passing` alone, UNTIL_PASSING_DRAW_FACTOR
    times the target. Raises BadInput for a target below 1 or neither given."""
    if until_passing is not None and until_passing < 1:
        raise BadInput(f"--until-passing {until_passing}: the target must be at least 1")
    if count is not None:
        return count
    if until_passing is None:
        raise BadInput("--count is required (or --until-passing N)")
    return min(MAX_COUNT, UNTIL_PASSING_DRAW_FACTOR * until_passing)


def _generation(request: GenerateRequest, progress: bool, play: Any) -> Callable[[], RunSummary]:
    return partial(generate_stage, request, display=display_for(progress), play=play)


def run_generate(
    request: GenerateRequest, *, progress: bool = True, play: Any = None
) -> RunSummary:
    """Plan and simulate (and judge as conversations complete); resumes what a stopped run
    left. Raises BadInput, ProviderUnusable, BudgetReached, Interrupted (a stop)."""
    return call_blocking(_generation(request, progress, play))


async def arun_generate(
    request: GenerateRequest, *, progress: bool = True, play: Any = None
) -> RunSummary:
    """`run_generate` on the caller's running loop."""
    return await call_awaitable(_generation(request, progress, play))


def _judging(request: JudgeRequest, progress: bool, say: Say | None) -> Callable[[], JudgeSummary]:
    return partial(judge_corpus, request, display=display_for(progress), say=say)


def run_judge(
    request: JudgeRequest, *, progress: bool = True, say: Say | None = None
) -> JudgeSummary:
    """Judge every complete, unjudged conversation. Raises BadInput, ProviderUnusable,
    BudgetReached, Interrupted (a stop)."""
    return call_blocking(_judging(request, progress, say))


async def arun_judge(
    request: JudgeRequest, *, progress: bool = True, say: Say | None = None
) -> JudgeSummary:
    """`run_judge` on the caller's running loop."""
    return await call_awaitable(_judging(request, progress, say))


def _evaluation(request: EvalRequest, progress: bool) -> Callable[[], EvalSummary]:
    return partial(run_eval, request, display=display_for(progress))


def run_evaluate(request: EvalRequest, *, progress: bool = True) -> EvalSummary:
    """Play held-out scenarios with the baseline and the candidate, judge both, summarise.
    Raises BadInput, ProviderUnusable, BudgetReached, Interrupted (a stop)."""
    return call_blocking(_evaluation(request, progress))


async def arun_evaluate(request: EvalRequest, *, progress: bool = True) -> EvalSummary:
    """`run_evaluate` on the caller's running loop."""
    return await call_awaitable(_evaluation(request, progress))


def configured_budget(request: GenerateRequest) -> float | None:
    """The run's spending limit in USD (`max_cost`, else the config's `budget_usd`), None for
    none. Raises BadInput for a bad config or flag."""
    return call_blocking(lambda: generate_settings(request).budget_usd)


def run_estimate(request: GenerateRequest) -> Estimate:
    """What the run would take; no model is called and nothing is written. Raises BadInput."""

    def estimate() -> Estimate:
        settings = generate_settings(request)
        return estimate_run(settings, request.count, request.db, shard=request.shard or WHOLE_PLAN)

    return call_blocking(estimate)


def run_passing_estimate(request: GenerateRequest) -> PassingEstimate:
    """What an `until_passing` run would take to reach its target. Raises BadInput."""
    return call_blocking(lambda: estimate_until_passing(generate_settings(request), request))
