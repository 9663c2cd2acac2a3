"""The one place a prepared run is run, for every stage: under the database's exclusive lock
with abandoned runs marked, stopped cleanly by SIGINT/SIGTERM (Interrupted says where it
stood), inside a RunSession (runs row, single writer, gateway counters, a finish that always
runs) with the progress display beside the work, and stopped cleanly by the budget. A stage
keeps only its plan and its work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from rapport.engine.budget import BudgetReached
from rapport.engine.gateway import Gateway
from rapport.engine.interrupts import Interrupted, run_interruptible
from rapport.engine.progress import RunProgress
from rapport.stages.preparation import PreparedRun
from rapport.stages.progress import LiveRun, Progress
from rapport.stages.session import RunSession, role_snapshots
from rapport.store.plans import RunRecord, finish_run, mark_abandoned_runs
from rapport.store.rows import utc_now
from rapport.store.run_lock import exclusive_run

T = TypeVar("T")
# Where the run stands, e.g. "40 of 51 conversations complete": read from the store when a
# signal or the budget stops it.
Standing = Callable[[], str]


class Runner(Protocol):
    """Runs a stage's async main on an event loop of its own, SIGINT/SIGTERM stopping it."""

    def __call__(self, main: Callable[..., Awaitable[T]], *args: object) -> T: ...


@contextmanager
def stage_shell(prepared: PreparedRun, db: Path, standing: Standing) -> Iterator[Runner]:
    """Hold the database's exclusive lock and mark the runs a killed process left `running`
    as abandoned; inside, the stage stores its plan and runs its main through the runner
    given: a signal cancels it, its cleanup finishes, and Interrupted carries `standing()`."""
    with exclusive_run(db):
        prepared.database.run_sync(mark_abandoned_runs)

        def run(main: Callable[..., Awaitable[T]], *args: object) -> T:
            try:
                return run_interruptible(main, *args)
            except Interrupted as stop:
                stop.progress = standing()
                raise

        yield run


async def run_session(
    prepared: PreparedRun,
    record: RunRecord,
    progress: RunProgress,
    work: Callable[[RunSession], Awaitable[T]],
    *,
    standing: Standing,
    display: Progress | None = None,
    shown: Mapping[str, Gateway] | None = None,
) -> T:
    """`work` in a RunSession over every gateway of the run (judges included) with `display`
    beside it, shown `shown` (default: the run's role gateways). When the budget refused a
    call, the calls in flight are stored (the writer drained as at any end), the run is marked
    `interrupted` (the next run resumes it) and BudgetReached says `standing()`."""
    database, settings = prepared.database, prepared.settings
    accounted = prepared.accounted
    session = RunSession(
        database,
        record,
        prepared.redactor,
        settings.store,
        role_snapshots(accounted, prepared.prices),
        accounted.values(),
        on_store_wait=progress.note_store_wait,
    )
    live = LiveRun(
        progress=progress,
        gateways=prepared.gateways if shown is None else shown,
        prices=prepared.prices,
        redactor=prepared.redactor,
    )
    result = await session.run(work, None if display is None else (lambda: display(live)))
    budget = prepared.budget
    if budget is not None and budget.reached:
        database.run_sync(lambda conn: finish_run(conn, record.run_id, "interrupted", utc_now()))
        raise BudgetReached(budget.budget_usd, budget.total_spent_usd, standing())
    return result
