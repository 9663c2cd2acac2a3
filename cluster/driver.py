"""The driver side of `rapport generate --ray`: the plan's jobs handed to N Ray worker actors,
their results fed to the run's one writer.

Why this shape: the driver keeps the run session (the `runs` row, the single DuckDB writer)
and the job stream, exactly as one process does. Workers get chunks of jobs (msgspec bytes)
and send back their StoreEvents in batches, so it works on any Ray cluster (no shared
filesystem, no shard files to merge), and the driver always knows which conversations are
done: when a worker dies, its unfinished conversations go back in the queue, resumed from the
turns the driver received (a prefix of what the worker played, in order), and played by
another worker. Nothing is lost, and nothing is stored twice (messages are keyed by
conversation and turn, and a resumed conversation starts after its last received turn). A
killed driver takes its actors with it; the same command resumes as any interrupted run.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rapport.agents.conversation import ConversationContext
from rapport.cluster.messages import WorkerReport, WorkerSpec, encode_jobs
from rapport.cluster.runtime import connect, disconnect, require_ray
from rapport.cluster.worker import ConversationWorker
from rapport.config.constants import (
    WORKER_CLOSE_S,
    WORKER_IDLE_POLL_S,
    WORKER_PULL_WAIT_S,
    WORKER_QUEUED_PER_SLOT,
)
from rapport.config.errors import RapportError
from rapport.config.run import RunConfig, api_key_env_names
from rapport.engine.errors import ProviderUnusable
from rapport.engine.factory import DEFAULT_KEY_ENV
from rapport.engine.gateway import Gateway
from rapport.engine.leases import BudgetKeeper, budget_spec
from rapport.store.plans import UnfinishedConversation
from rapport.store.reads import Turn
from rapport.store.rows import StoreEvent

Jobs = AsyncIterator[tuple[int, UnfinishedConversation]]


class ClusterRequest(msgspec.Struct, frozen=True):
    """`--ray [ADDRESS]` and `--workers N`: ADDRESS is `auto`, `ray://…`, a GCS address, or
    None for a new local cluster (or the one this process is already connected to)."""

    address: str | None = None
    workers: int = 2
    # False: each worker owns every limit whole, as separate processes would (the naive
    # configuration `rapport bench scale` shows beside the shared budget); never the default.
    shared_budget: bool = True


class WorkerStopped(ProviderUnusable):
    """A worker stopped the run: its provider is unusable (the kind it gave is stored)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class InFlight:
    """A conversation handed to a worker, and the turns received of it since."""

    __slots__ = ("job", "turns")

    def __init__(self, job: UnfinishedConversation) -> None:
        self.job = job
        self.turns: list[Turn] = []

    def resumed(self) -> UnfinishedConversation:
        """The job as the store now has it: to be played on from its last received turn."""
        return msgspec.structs.replace(self.job, messages=(*self.job.messages, *self.turns))


class RayPlayer:
    """`simulate`'s player for a Ray cluster (see the module docstring)."""

    def __init__(self, request: ClusterRequest, settings: RunConfig, config_file: str) -> None:
        self.request = request
        self.settings = settings
        self.config_file = config_file
        # Connected here, on the main thread (Ray sets signal handlers there), before the run.
        self.connected = connect(request.address)
        self.lost_workers = 0  # workers that died during the run (faults, tests)
        self.requeued = (0, 0)  # (conversations, turns already received) a dead worker left
        self.actor_names: list[str] = []

    async def __call__(self, context: ConversationContext, jobs: Jobs) -> None:
        ray = require_ray()
        keeper: list[Any] = []
        workers: list[Any] = []
        try:
            await self._play(ray, context, jobs, keeper, workers)
        finally:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(WORKER_CLOSE_S):  # their HTTP clients closed politely
                    for worker in workers:
                        with contextlib.suppress(ray.exceptions.RayError):  # dead: none open
                            await worker.close.remote()
                for actor in keeper + workers:
                    ray.kill(actor)
                if self.connected:
                    await anyio.to_thread.run_sync(disconnect)

    async def _play(
        self, ray: Any, context: ConversationContext, jobs: Jobs, keeper: list, workers: list
    ) -> None:
        """Start the budget keeper and the workers (into `keeper` and `workers`), then play."""
        count = self.request.workers
        if self.request.shared_budget:
            budgets = budget_spec(context.gateways)
            keeper.append(ray.remote(BudgetKeeper).options(num_cpus=0).remote(budgets))
        spec = WorkerSpec(
            settings=self.settings,
            domain=context.domain,
            run_id=context.run_id,
            max_active=max(1, math.ceil(self.settings.max_active / count)),
            workers=count,
            config_file=self.config_file,
        )
        encoded = msgspec.msgpack.encode(spec)
        keys = {name: os.environ.get(name, "") for name in key_env_names(self.settings)}
        keys = {name: value for name, value in keys.items() if value}
        # A core each where the cluster has them (spread over its nodes); a share of one where
        # it has fewer than workers (a laptop), rather than workers that never start.
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        options: dict[str, Any] = {"num_cpus": min(1.0, cpus / count), "max_restarts": 0}
        if keys:  # API keys travel as the workers' environment, never in the object store
            options["runtime_env"] = {"env_vars": keys}
        for index in range(count):
            name = f"rapport-{context.run_id}-worker-{index}"
            self.actor_names.append(name)
            actor = ray.remote(ConversationWorker).options(name=name, **options)
            workers.append(actor.remote(encoded, keeper[0] if keeper else None))
        dispatcher = Dispatcher(ray, workers, jobs, context, spec.max_active)
        try:
            await dispatcher.run()
        finally:
            self.lost_workers = dispatcher.lost
            self.requeued = (dispatcher.requeued, dispatcher.carried_turns)


def key_env_names(settings: RunConfig) -> set[str]:
    """Every variable a worker may read an API key from: the roles', their replicas', and
    the providers' defaults."""
    names = set(api_key_env_names(settings)) | set(DEFAULT_KEY_ENV.values())
    for backend in (settings.backends.user_sim, settings.backends.assistant):
        for replica in getattr(backend, "replicas", ()):
            if replica.api_key_env:
                names.add(replica.api_key_env)
    return names


class Dispatcher:
    """Keeps every live worker supplied with jobs and drains its results into the sink."""

    def __init__(
        self,
        ray: Any,
        workers: list[Any],
        jobs: Jobs,
        context: ConversationContext,
        per_worker: int,
    ) -> None:
        self._ray = ray
        self._workers = workers
        self._source = jobs
        self._source_done = False
        # The job stream is read by one pump task into this buffer: a worker with conversations
        # in flight takes what is ready and never waits on the stream (which may itself wait
        # for those conversations, as `--until-passing` does), so their results keep coming.
        self._pumped: MemoryObjectReceiveStream[UnfinishedConversation] | None = None
        self._requeued: deque[UnfinishedConversation] = deque()
        self._context = context
        self._target = per_worker * WORKER_QUEUED_PER_SLOT
        self._assigned: list[dict[str, InFlight]] = [{} for _ in workers]
        self._alive = [True] * len(workers)
        self._active = [0] * len(workers)
        self._totals: list[tuple[int, int, int]] = [(0, 0, 0)] * len(workers)
        self._gateway_totals: list[dict[str, Any]] = [{} for _ in workers]
        self.lost = 0
        self.requeued = 0  # conversations a dead worker left, handed on
        self.carried_turns = 0  # their turns received before it died, not played again

    async def run(self) -> None:
        send, self._pumped = anyio.create_memory_object_stream[UnfinishedConversation](self._target)
        async with anyio.create_task_group() as group, self._pumped:
            group.start_soon(self._pump, send)
            async with anyio.create_task_group() as serving:
                for index in range(len(self._workers)):
                    serving.start_soon(self._serve, index)
            group.cancel_scope.cancel()  # every job was taken: the pump has nothing left

    async def _pump(self, send: MemoryObjectSendStream[UnfinishedConversation]) -> None:
        async with send:
            async for _, job in self._source:
                await send.send(job)

    def _finished(self) -> bool:
        return (
            self._source_done
            and not self._requeued
            and not any(assigned for assigned in self._assigned)
        )

    async def _next_jobs(self, room: int, wait: bool) -> list[UnfinishedConversation]:
        """Up to `room` jobs: the requeued first, then those ready; waits for one (polling, so
        that a dead worker's requeued jobs are seen too) only when `wait` (the worker has
        nothing in flight) and none was ready."""
        taken: list[UnfinishedConversation] = []
        while len(taken) < room and self._requeued:
            taken.append(self._requeued.popleft())
        pumped = self._pumped
        assert pumped is not None, "run() sets the pump up"
        while len(taken) < room and not self._source_done:
            if self._requeued:  # a worker died meanwhile
                taken.append(self._requeued.popleft())
                continue
            try:
                taken.append(pumped.receive_nowait())
            except anyio.WouldBlock:
                if taken or not wait:
                    break
                await anyio.sleep(WORKER_IDLE_POLL_S)
            except anyio.EndOfStream:
                self._source_done = True
        return taken

    async def _serve(self, index: int) -> None:
        worker, assigned = self._workers[index], self._assigned[index]
        error_types = self._ray.exceptions.RayError
        try:
            while True:
                room = self._target - len(assigned)
                if room >= max(1, self._target // 4):
                    batch = await self._next_jobs(room, wait=not assigned)
                    if batch:
                        for job in batch:
                            assigned[job.scenario.scenario_id] = InFlight(job)
                        await worker.add.remote(encode_jobs(batch))
                if self._finished():
                    return
                data = await worker.pull.remote(WORKER_PULL_WAIT_S)
                await self._absorb(index, msgspec.msgpack.decode(data, type=WorkerReport))
        except error_types as error:
            self._lose(index, error)

    def _lose(self, index: int, error: BaseException) -> None:
        """A dead worker's conversations go back to the front of the queue, as stored."""
        self._alive[index] = False
        self.lost += 1
        self._active[index] = 0
        for flight in self._assigned[index].values():
            self._requeued.appendleft(flight.resumed())
            self.requeued += 1
            self.carried_turns += len(flight.turns)
        self._assigned[index].clear()
        self._context.progress.active = sum(self._active)
        if not any(self._alive):
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            cause = lines[-1][:300] if lines else type(error).__name__
            raise RapportError(
                f"every Ray worker died (the last: {cause}): run the same command again to resume"
            )

    async def _absorb(self, index: int, report: WorkerReport) -> None:
        context, assigned = self._context, self._assigned[index]
        progress = context.progress
        for event in report.events:
            await context.sink.send(event)
            await self._follow(assigned, event)
        turns, truncated, tokens = self._totals[index]
        new_turns = report.turns - turns
        if new_turns:
            progress.turns += new_turns
            progress.truncated += report.truncated - truncated
            progress.tokens += report.tokens - tokens
            progress.requests_window.add(new_turns)
            progress.tokens_window.add(report.tokens - tokens)
        self._totals[index] = (report.turns, report.truncated, report.tokens)
        self._active[index] = report.active
        progress.active = sum(self._active)
        self._add_gateway_counters(index, report)
        if report.stopped is not None:
            raise WorkerStopped(*report.stopped)
        if report.crashed is not None:
            raise RuntimeError(f"a Ray worker's engine failed: {report.crashed}")

    async def _follow(self, assigned: dict[str, InFlight], event: StoreEvent) -> None:
        """Keep each in-flight conversation's received turns; count and hand on the finished."""
        message, update = event.message, event.update
        if message is not None and (flight := assigned.get(message.conversation_id)):
            flight.turns.append(
                Turn(
                    message.role,
                    message.content,
                    message.turn_index,
                    message.exchange,
                    message.finish_reason,
                    message.final,
                )
            )
        if update is None or update.status not in ("complete", "failed"):
            return
        flight = assigned.pop(update.conversation_id, None)
        progress = self._context.progress
        if update.status == "failed":
            progress.failed += 1
            return
        progress.done += 1
        after = self._context.after_complete
        if after is not None and flight is not None:
            await after(flight.job.scenario, [*flight.job.messages, *flight.turns])

    def _add_gateway_counters(self, index: int, report: WorkerReport) -> None:
        """The driver's gateways (and their replicas) show and store the sum of every
        worker's counters."""
        self._gateway_totals[index].update(report.gateways)
        for name, latest in report.gateways.items():
            stats = self._stats_of(name)
            if stats is None:
                continue
            for field in latest.totals:
                totals = (t[name].totals.get(field, 0) for t in self._gateway_totals if name in t)
                setattr(stats, field, sum(totals))
            stats.latencies_s.extend(latest.new_latencies_s)

    def _stats_of(self, name: str) -> Any:
        role, _, replica = name.partition("|")
        gateway: Gateway | None = self._context.gateways.get(role)
        if gateway is None:
            return None
        if not replica:
            return gateway.stats
        replicas = getattr(gateway.backend, "replicas", ())
        return replicas[int(replica)].stats if int(replica) < len(replicas) else None


def ray_player(request: ClusterRequest) -> Any:
    """For `generate(play=…)`: a Ray player built from the prepared run."""

    def build(generation: Any) -> RayPlayer:
        shown = str(generation.request.config or "run config")
        return RayPlayer(request, generation.settings, shown)

    return build
