"""One run's lifecycle, the same for every stage: the `runs` row, the single writer and the
sink feeding it, gateway counters stored periodically, and a finish that runs even when the
run is cancelled (counters stored, unfinished conversations released, gateways closed)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from rapport.config import constants
from rapport.config.exception_groups import first_leaf
from rapport.config.prices import PriceTable
from rapport.config.run import StoreSettings
from rapport.config.secrets import Redactor
from rapport.engine.accounting import GatewaySnapshot, snapshot_gateways
from rapport.engine.errors import ProviderUnusable
from rapport.engine.gateway import Gateway
from rapport.engine.progress import StoreWait
from rapport.store.database import Database
from rapport.store.plans import (
    RunRecord,
    StopReason,
    finish_run,
    release_unfinished,
    save_gateway_stats,
    start_run,
)
from rapport.store.rows import StoreEvent, utc_now
from rapport.store.writer import StoreWriter

VERSION = "0.1.0"
T = TypeVar("T")
Snapshots = Callable[[str], list[GatewaySnapshot]]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def role_snapshots(gateways: Mapping[str, Gateway], prices: PriceTable) -> Snapshots:
    """One `gateway_stats` row per distinct gateway, naming the roles that share it (judges
    as `judge:ID`); distinct gateways on the same endpoint are told apart by their roles."""

    def snapshots(run_id: str) -> list[GatewaySnapshot]:
        taken = snapshot_gateways(run_id, gateways, prices, utc_now())
        names = [s.gateway for s in taken]
        return [
            msgspec.structs.replace(s, gateway=f"{s.gateway} ({','.join(s.roles)})")
            if names.count(s.gateway) > 1
            else s
            for s in taken
        ]

    return snapshots


class RunSession:
    """What a stage runs inside. `run(work)` starts the `runs` row and the writer, calls
    `work(session)` (which sends to `session.sink`), and always finishes: the stage's body
    never writes its own lifecycle."""

    def __init__(
        self,
        database: Database,
        record: RunRecord,
        redactor: Redactor,
        store: StoreSettings,
        snapshots: Snapshots,
        gateways: Iterable[Gateway],
        on_store_wait: Callable[[StoreWait | None], None] | None = None,
    ) -> None:
        self.database = database
        if on_store_wait is not None:  # a reader holding the file: shown live
            database.on_wait = on_store_wait
        self.record = record
        self.redactor = redactor
        self.store = store
        self.snapshots = snapshots
        self.gateways = list({id(g): g for g in gateways}.values())  # each closed once
        self._sink: MemoryObjectSendStream[StoreEvent] | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def sink(self) -> MemoryObjectSendStream[StoreEvent]:
        """Where the stage sends what is to be stored (the single writer reads it)."""
        if self._sink is None:
            raise RuntimeError("the run session has not started")
        return self._sink

    async def record_gateways(self) -> None:
        snapshots = self.snapshots(self.run_id)
        await self.database.run(lambda conn: save_gateway_stats(conn, snapshots, self.redactor))

    async def _record_gateways_periodically(self) -> None:
        while True:
            await anyio.sleep(constants.GATEWAY_STATS_INTERVAL_S)
            await self.record_gateways()

    async def run(
        self,
        work: Callable[[RunSession], Awaitable[T]],
        display: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        async with self.database.session():  # one connection from the runs row to its finish
            return await self._run(work, display)

    async def _run(
        self,
        work: Callable[[RunSession], Awaitable[T]],
        display: Callable[[], Awaitable[None]] | None,
    ) -> T:
        await self.database.run(lambda conn: start_run(conn, self.record, self.redactor))
        writer = StoreWriter(
            self.database,
            flush_rows=self.store.flush_rows,
            flush_interval_s=self.store.flush_interval_s,
            redactor=self.redactor,
        )
        send, receive = anyio.create_memory_object_stream[StoreEvent](constants.STORE_QUEUE_EVENTS)
        self._sink = send
        status = "interrupted"
        stopped_by: StopReason | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(writer.run, receive)
                async with send, anyio.create_task_group() as side_tasks:
                    side_tasks.start_soon(self._record_gateways_periodically)
                    if display is not None:
                        side_tasks.start_soon(display)
                    result = await work(self)
                    side_tasks.cancel_scope.cancel()
            status = "finished"
        except* ProviderUnusable as stop:
            stopped_by = stop_reason(stop)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish(status, stopped_by)
        return result

    async def _finish(self, status: str, stopped_by: StopReason | None) -> None:
        run_id = self.run_id
        try:
            await self.record_gateways()
            await self.database.run(
                lambda conn: release_unfinished(conn, run_id, stopped_by, utc_now())
            )
            await self.database.run(lambda conn: finish_run(conn, run_id, status, utc_now()))
        finally:
            for gateway in self.gateways:
                await gateway.aclose()


def run_record(
    run_id: str,
    command: str,
    plan_id: str,
    count: int,
    user_backend: str,
    assistant_backend: str,
    settings: msgspec.Struct,
    shard: str | None = None,
) -> RunRecord:
    """A `runs` row as a stage starts it (`shard`: K/N of a sharded generate)."""
    return RunRecord(
        run_id=run_id,
        plan_id=plan_id,
        command=command,
        count=count,
        status="running",
        started_at=utc_now(),
        user_backend=user_backend,
        assistant_backend=assistant_backend,
        settings=msgspec.json.encode(settings).decode(),
        rapport_version=VERSION,
        shard=shard,
    )


def stop_reason(group: BaseExceptionGroup[ProviderUnusable]) -> StopReason:
    """The first provider failure that stopped a run, to store with what it interrupted."""
    leaf = first_leaf(group)
    return StopReason(getattr(leaf, "kind", ProviderUnusable.kind), str(leaf))
