"""The bare skeleton the engine is measured against: per conversation two anyio tasks that
exchange turns over memory streams, at most `max_active` conversations at once, and one writer
that inserts every turn into DuckDB as Arrow batches. No prompts, seeds, gateway or backend: what
is left is the floor any engine built on anyio and DuckDB pays, so `engine / skeleton` says how
much of the machine the engine's own work takes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import duckdb
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rapport.config.constants import STORE_FLUSH_ROWS

REPLY = "ok"
SCHEMA = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("turn_index", pa.int32()),
        ("role", pa.string()),
        ("content", pa.string()),
        ("created_at", pa.timestamp("us")),
    ]
)
Row = tuple[str, int, str, str, datetime]


def skeleton_turns_per_s(
    db: Path, conversations: int, turns: int, max_active: int = 1_000
) -> float:
    """Turns/s of the skeleton playing `conversations` of `turns` exchanges (two turns each)."""
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "CREATE TABLE messages (conversation_id VARCHAR, turn_index INTEGER, role VARCHAR, "
            "content VARCHAR, created_at TIMESTAMP)"
        )
    started = time.perf_counter()
    written = anyio.run(_run, db, conversations, turns, max_active)
    elapsed = time.perf_counter() - started
    if written != conversations * turns * 2:
        raise RuntimeError(f"skeleton wrote {written} turns, expected {conversations * turns * 2}")
    return written / elapsed


async def _run(db: Path, conversations: int, turns: int, max_active: int) -> int:
    sink: MemoryObjectSendStream[Row]
    rows: MemoryObjectReceiveStream[Row]
    sink, rows = anyio.create_memory_object_stream(STORE_FLUSH_ROWS)
    slots = anyio.Semaphore(max_active)
    writer = _Writer(db)
    async with anyio.create_task_group() as outer:
        outer.start_soon(writer.run, rows)
        async with sink, anyio.create_task_group() as group:
            for number in range(conversations):
                await slots.acquire()
                group.start_soon(_conversation, f"c{number}", turns, sink.clone(), slots)
    return writer.written


async def _conversation(
    cid: str, turns: int, sink: MemoryObjectSendStream[Row], slots: anyio.Semaphore
) -> None:
    to_assistant: MemoryObjectSendStream[int]
    assistant_inbox: MemoryObjectReceiveStream[int]
    to_user: MemoryObjectSendStream[int]
    user_inbox: MemoryObjectReceiveStream[int]
    to_assistant, assistant_inbox = anyio.create_memory_object_stream(1)
    to_user, user_inbox = anyio.create_memory_object_stream(1)
    try:
        async with sink, assistant_inbox, user_inbox, anyio.create_task_group() as group:
            group.start_soon(_assistant, cid, assistant_inbox, to_user, sink)
            async with to_assistant:
                for exchange in range(turns):
                    turn = exchange * 2
                    await sink.send((cid, turn, "user", REPLY, datetime.now(UTC)))
                    await to_assistant.send(turn)
                    await user_inbox.receive()
    finally:
        slots.release()


async def _assistant(
    cid: str,
    inbox: MemoryObjectReceiveStream[int],
    outbox: MemoryObjectSendStream[int],
    sink: MemoryObjectSendStream[Row],
) -> None:
    async with outbox:
        async for turn in inbox:
            await sink.send((cid, turn + 1, "assistant", REPLY, datetime.now(UTC)))
            await outbox.send(turn + 1)


class _Writer:
    """Batches of STORE_FLUSH_ROWS rows, each inserted as an Arrow table off the event loop,
    over one connection."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self.written = 0

    async def run(self, rows: MemoryObjectReceiveStream[Row]) -> None:
        conn = duckdb.connect(str(self._db))
        try:
            pending: list[Row] = []
            async with rows:
                async for row in rows:
                    pending.append(row)
                    if len(pending) >= STORE_FLUSH_ROWS:
                        await anyio.to_thread.run_sync(_insert, conn, pending)
                        self.written += len(pending)
                        pending = []
            if pending:
                await anyio.to_thread.run_sync(_insert, conn, pending)
                self.written += len(pending)
        finally:
            conn.close()


def _insert(conn: duckdb.DuckDBPyConnection, rows: list[Row]) -> None:
    columns = list(zip(*rows, strict=True))
    batch = pa.Table.from_arrays(
        [pa.array(column, type=field.type) for column, field in zip(columns, SCHEMA, strict=True)],
        schema=SCHEMA,
    )
    conn.register("incoming_rows", batch)
    try:
        conn.execute("INSERT INTO messages SELECT * FROM incoming_rows")
    finally:
        conn.unregister("incoming_rows")
