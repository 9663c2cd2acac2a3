"""Judging as its own pool inside a run: completed conversations arrive over a stream (one per
judge), and each judge's workers, as many as its gateway can keep busy, assess them. A
conversation's generation slot is free once its last turn is stored; judging it never holds
one, and an error while judging is a judge failure, never a failed conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rapport.agents.conversation import Transcript
from rapport.config import constants
from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.config.sides import SIDES, Side, judged_sides
from rapport.engine.progress import JudgingProgress
from rapport.judges.judge import Judge
from rapport.judges.panel import assess, judging_concurrency
from rapport.stages.jobs import unjudged_conversations
from rapport.store.database import Database
from rapport.store.judgements import JudgeJob
from rapport.store.rows import StoreEvent


class JudgePool:
    """Inside `running()`, `submit` each completed conversation; the stored ones still unjudged
    are read as well. With no judges it does nothing. `counts` is what it did so far (waiting,
    being judged, judged, failed): pass a run's `RunProgress.judging` to show it live."""

    def __init__(
        self,
        judges: Sequence[Judge],
        domains: Mapping[str, Domain],
        sink: MemoryObjectSendStream[StoreEvent],
        max_active: int,
        counts: JudgingProgress | None = None,
        sides: Sequence[Side] = SIDES,
    ) -> None:
        self.judges = list(judges)
        self.domains = domains
        self.sink = sink
        self.max_active = max_active
        self.sides = tuple(sides)
        self.counts = counts if counts is not None else JudgingProgress()
        self.judge_failed: set[str] = set()  # conversations a judge failed on (this run)
        self._inboxes: list[
            tuple[MemoryObjectSendStream[JudgeJob], MemoryObjectReceiveStream[JudgeJob]]
        ] = [
            anyio.create_memory_object_stream(constants.JUDGE_BACKLOG_CONVERSATIONS)
            for _ in self.judges
        ]

    async def submit(self, scenario: Scenario, transcript: Transcript) -> None:
        """A conversation just completed: every judge gets it, once per side its domain
        judges."""
        domain = self.domains[scenario.plan_id]
        sides = [side for side in judged_sides(domain) if side in self.sides]
        jobs = [JudgeJob(scenario, tuple(transcript), {}, side) for side in sides]
        for send, _ in self._inboxes:
            for job in jobs:
                self.counts.waiting += 1
                await send.send(job)

    def _start_pending(
        self,
        group: TaskGroup,
        database: Database,
        plan_ids: Sequence[str] | None = None,
        below_index: int | None = None,
        exclude_run: str | None = None,
    ) -> None:
        """Also judge the stored complete conversations each judge has not fully assessed
        (not those of `exclude_run`: they are submitted as they complete). Call before
        `_close()`: each feed keeps its judge's inbox open until it has read everything."""
        for judge, (send, _) in zip(self.judges, self._inboxes, strict=True):
            for side in self.sides:
                judged = sided_plans(self.domains, side)
                if judged is not None and not judged:  # no plan judges this side
                    continue
                feed = send.clone()
                group.start_soon(
                    self._feed, database, judge, feed, plan_ids, below_index, exclude_run,
                    side, judged,
                )  # fmt: skip

    async def _feed(
        self,
        database: Database,
        judge: Judge,
        send: MemoryObjectSendStream[JudgeJob],
        plan_ids: Sequence[str] | None,
        below_index: int | None,
        exclude_run: str | None,
        side: Side,
        judged: Sequence[str] | None,
    ) -> None:
        async with send:
            jobs = unjudged_conversations(
                database, judge.id, plan_ids, below_index, exclude_run, side, judged
            )
            async for job in jobs:
                self.counts.waiting += 1
                await send.send(job)

    @asynccontextmanager
    async def running(
        self,
        database: Database,
        plan_ids: Sequence[str] | None = None,
        below_index: int | None = None,
        exclude_run: str | None = None,
    ) -> AsyncIterator[None]:
        """The pool judging while the body runs (what it submits, and the stored pending
        conversations as in `_start_pending`); on leaving, waits until everything is judged."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._run)
            self._start_pending(group, database, plan_ids, below_index, exclude_run)
            try:
                yield
            finally:
                self._close()

    def _close(self) -> None:
        """No more submissions: the workers finish what is queued, then `_run()` returns."""
        for send, _ in self._inboxes:
            send.close()

    async def _run(self) -> None:
        async with anyio.create_task_group() as group:
            for judge, (_, receive) in zip(self.judges, self._inboxes, strict=True):
                workers = judging_concurrency([judge], self.max_active)
                with receive:
                    for _ in range(workers):
                        group.start_soon(self._work, judge, receive.clone())

    async def _work(self, judge: Judge, inbox: MemoryObjectReceiveStream[JudgeJob]) -> None:
        async with inbox:
            async for job in inbox:
                counts = self.counts
                counts.waiting -= 1
                counts.active += 1
                try:
                    event = await assess(judge, self.domains[job.scenario.plan_id], job)
                finally:
                    counts.active -= 1
                counts.judged += 1
                counts.failed += len(event.judge_failures)
                counts.failed_conversations += bool(event.judge_failures)
                if event.judge_failures:
                    self.judge_failed.add(job.scenario.scenario_id)
                counts.answered += len(event.verdicts)
                await self.sink.send(event)


def sided_plans(domains: Mapping[str, Domain], side: Side) -> list[str] | None:
    """The plans whose domain judges `side`: None (every plan) for the assistant's, else the
    plans with a simulator_rubric.yaml (empty: nothing to judge on that side)."""
    if side == "assistant":
        return None
    return sorted(plan_id for plan_id, domain in domains.items() if side in judged_sides(domain))
