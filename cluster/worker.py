"""A Ray worker: the same anyio engine as one process (run_conversation under run_bounded,
gateways from engine.factory), fed jobs by the driver and drained of what it would store.

The worker writes nothing itself: its StoreEvents wait in a bounded stream until the driver
pulls them (in batches, msgspec-encoded), so the corpus has one writer, no worker needs the
driver's filesystem, and a worker that falls behind the driver is held back, not buffered
without end. Its gateways spend leases of the run's one budget (engine/leases.py).
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rapport.agents.conversation import ConversationContext, run_conversation
from rapport.agents.prompts import assistant_prompt
from rapport.cluster.messages import (
    ENCODER,
    WorkerReport,
    WorkerSpec,
    counters,
    decode_jobs,
    latency_count,
)
from rapport.config import constants
from rapport.config.exception_groups import first_leaf
from rapport.engine.errors import ProviderUnusable
from rapport.engine.factory import build_gateways
from rapport.engine.leases import Grant, lease_budgets
from rapport.engine.progress import RunProgress
from rapport.engine.scheduler import run_bounded
from rapport.store.plans import UnfinishedConversation
from rapport.store.rows import StoreEvent


class RemoteBroker:
    """The budget keeper actor seen as a `LeaseBroker`."""

    def __init__(self, keeper: Any) -> None:
        self._keeper = keeper

    async def lease(self, key: str, unit: str, amount: float) -> Grant:
        return await self._keeper.lease.remote(key, unit, amount)

    async def pause(self, key: str, seconds: float) -> None:
        await self._keeper.pause.remote(key, seconds)


class ConversationWorker:
    """Run as a Ray actor (async methods: one event loop plays all its conversations)."""

    def __init__(self, spec: bytes, keeper: Any | None) -> None:
        self.spec = msgspec.msgpack.decode(spec, type=WorkerSpec)
        settings, domain = self.spec.settings, self.spec.domain
        self.gateways = build_gateways(settings.backends, dict(os.environ), self.spec.config_file)
        if keeper is not None:
            lease_budgets(self.gateways, RemoteBroker(keeper), self.spec.workers)
        self.progress = RunProgress(total=0)
        events: tuple[MemoryObjectSendStream[StoreEvent], MemoryObjectReceiveStream[StoreEvent]]
        events = anyio.create_memory_object_stream(constants.STORE_QUEUE_EVENTS)
        self._events_send, self._events = events
        jobs: tuple[
            MemoryObjectSendStream[UnfinishedConversation],
            MemoryObjectReceiveStream[UnfinishedConversation],
        ] = anyio.create_memory_object_stream(math.inf)
        self._jobs_send, self._jobs = jobs
        self.context = ConversationContext(
            domain=domain,
            run_id=self.spec.run_id,
            gateways=self.gateways,
            backends=settings.backends,
            sink=self._events_send,
            progress=self.progress,
            assistant_system=assistant_prompt(domain),
        )
        self._task: Any = None
        self._stopped: tuple[str, str] | None = None
        self._crashed: str | None = None
        self._reported: dict[str, int] = {}

    async def add(self, jobs: bytes) -> None:
        """More conversations to play (the driver keeps a few batches queued here)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._play())
        for job in decode_jobs(jobs):
            self._jobs_send.send_nowait(job)

    async def _play(self) -> None:
        async def queued():
            async for job in self._jobs:
                yield job

        try:
            await run_bounded(
                queued(), self.spec.max_active, lambda job: run_conversation(job, self.context)
            )
        except* ProviderUnusable as stop:
            leaf = first_leaf(stop)
            self._stopped = (getattr(leaf, "kind", ProviderUnusable.kind), str(leaf))
        except* Exception as error:
            self._crashed = repr(first_leaf(error))

    async def pull(self, wait_s: float) -> bytes:
        """What was played since the last pull; waits up to `wait_s` for something to send."""
        events: list[StoreEvent] = []
        with anyio.move_on_after(wait_s):
            events.append(await self._events.receive())
        while len(events) < constants.WORKER_REPORT_EVENTS:
            try:
                events.append(self._events.receive_nowait())
            except anyio.WouldBlock:
                break
        return ENCODER.encode(self._report(events))

    def _report(self, events: list[StoreEvent]) -> WorkerReport:
        gateways = {}
        seen: set[int] = set()
        for role, gateway in self.gateways.items():
            if id(gateway) in seen:
                continue
            seen.add(id(gateway))
            measured = {role: gateway.stats}
            for index, replica in enumerate(getattr(gateway.backend, "replicas", ())):
                measured[f"{role}|{index}"] = replica.stats
            for name, stats in measured.items():
                gateways[name] = counters(stats, self._reported.get(name, 0))
                self._reported[name] = latency_count(stats)
        progress = self.progress
        return WorkerReport(
            events=events,
            turns=progress.turns,
            truncated=progress.truncated,
            tokens=progress.tokens,
            active=progress.active,
            gateways=gateways,
            stopped=self._stopped,
            crashed=self._crashed,
        )

    async def close(self) -> None:
        self._jobs_send.close()
        for gateway in {id(g): g for g in self.gateways.values()}.values():
            await gateway.aclose()
