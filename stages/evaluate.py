"""`rapport eval`: play the held-out scenarios with each side as the assistant (both sides at
once, through their gateways, against one user simulator), judge every conversation with the
same judges as it completes, and compare. Everything streams into DuckDB; a re-run resumes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import msgspec

from rapport.agents.conversation import ConversationContext, run_conversation
from rapport.agents.prompts import assistant_prompt
from rapport.config.prices import load_prices
from rapport.config.run import Backends
from rapport.engine.interrupts import Interrupted, run_interruptible
from rapport.engine.progress import JudgingProgress, RunProgress
from rapport.engine.scheduler import run_bounded
from rapport.evaluation.held_out import side_plan_id
from rapport.evaluation.run import (
    EvalRequest,
    PreparedEval,
    prepare_eval,
    store_eval_plan,
    summarise,
)
from rapport.evaluation.summary import EvalSummary
from rapport.stages.jobs import unfinished_conversations
from rapport.stages.judge_pool import JudgePool
from rapport.stages.session import RunSession, new_run_id, role_snapshots, run_record
from rapport.store.evaluations import SIDES, save_eval_summary, status_counts
from rapport.store.plans import mark_abandoned_runs
from rapport.store.run_lock import exclusive_run


async def play_and_judge(
    prepared: PreparedEval,
    progress: RunProgress,
    display: Callable[[RunProgress], Awaitable[None]] | None = None,
) -> None:
    """Both sides' unfinished conversations, each judged as it completes, and whatever an
    interrupted run left unjudged: one session, generation and judging as two pools."""
    database, settings, domain = prepared.database, prepared.settings, prepared.domain
    accounted = {**prepared.gateways, **{f"judge:{j.id}": j.gateway for j in prepared.judges}}
    session = RunSession(
        database,
        run_record(
            new_run_id(),
            "eval",
            prepared.held_out_plan,
            prepared.request.scenarios,
            prepared.gateways["user_sim"].label,
            " vs ".join(prepared.gateways[s].label for s in SIDES),
            settings,
        ),
        prepared.redactor,
        settings.store,
        role_snapshots(accounted, load_prices(settings.prices)),
        accounted.values(),
    )
    plans = [side_plan_id(prepared.eval_id, side) for side in SIDES]

    async def work(session: RunSession) -> None:
        progress.judging = JudgingProgress()
        pool = JudgePool(
            prepared.judges,
            dict.fromkeys(plans, domain),
            session.sink,
            settings.max_active,
            progress.judging,
        )
        system = assistant_prompt(domain)
        contexts: Mapping[int, ConversationContext] = {
            which: ConversationContext(
                domain=domain,
                run_id=session.run_id,
                gateways={
                    "user_sim": prepared.gateways["user_sim"],
                    "assistant": prepared.gateways[side],
                },
                backends=Backends(user_sim=prepared.user_sim, assistant=prepared.sides[side]),
                sink=session.sink,
                progress=progress,
                assistant_system=system,
                after_complete=pool.submit,
                cache=settings.cache,
            )
            for which, side in enumerate(SIDES)
        }
        jobs = unfinished_conversations(
            database, plans, prepared.request.scenarios, include_failed=settings.retry_failed
        )
        below = prepared.request.scenarios
        async with pool.running(database, plans, below, exclude_run=session.run_id):
            await run_bounded(
                jobs,
                settings.max_active,
                lambda item: run_conversation(item[1], contexts[item[0]]),
            )

    await session.run(work, (lambda: display(progress)) if display is not None else None)


def run_eval(
    request: EvalRequest,
    *,
    environ: Mapping[str, str] | None = None,
    display: Callable[[PreparedEval], Callable[[RunProgress], Awaitable[None]] | None]
    | None = None,
) -> EvalSummary:
    """The whole command: validate, store the plan, play, judge, summarise (and store it)."""
    prepared = prepare_eval(request, environ)
    with exclusive_run(request.db):
        prepared.database.run_sync(mark_abandoned_runs)
        store_eval_plan(prepared)
        progress = RunProgress(total=2 * request.scenarios)
        try:
            run_interruptible(
                play_and_judge, prepared, progress, display(prepared) if display else None
            )
        except Interrupted as stop:
            statuses = prepared.database.run_sync(
                lambda conn: status_counts(conn, prepared.eval_id, request.scenarios)
            )
            complete = sum(counts.get("complete", 0) for counts in statuses.values())
            stop.progress = f"{complete:,} of {2 * request.scenarios:,} conversations complete"
            raise
        summary = summarise(prepared)
        encoded = msgspec.json.encode(summary).decode()
        prepared.database.run_sync(lambda conn: save_eval_summary(conn, prepared.eval_id, encoded))
    return summary
