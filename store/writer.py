"""The single writer actor: receives rows from every actor, commits them in batches.

Double-buffered: while one batch commits (in a worker thread), the writer goes on taking events
into the next; only when `max_pending_rows` wait does it hold senders back until the commit ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import duckdb
from anyio.streams.memory import MemoryObjectReceiveStream

from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.store.batch import (
    FINISHED,
    ConversationChange,
    apply_batch,
    encode_batch,
    fold_updates,
)
from rapport.store.database import Database
from rapport.store.rows import StoreEvent
from rapport.store.transaction import transaction

__all__ = ["FINISHED", "ConversationChange", "StoreWriter", "fold_updates", "write_batch"]


class StoreWriter:
    """Owns all writes of a run. A batch is flushed when it reaches `flush_rows` events or when
    `flush_interval_s` has passed, whichever comes first; each batch is one transaction.
    Every text a row carries passes through `redactor` on its way in (see store.arrow_rows).
    The run keeps one connection to the file (Database.session); a batch that finds the file
    held by another process waits on disk and is written, in order, when it is free."""

    def __init__(
        self,
        database: Database,
        *,
        flush_rows: int,
        flush_interval_s: float,
        on_flush: Callable[[int], None] | None = None,
        redactor: Redactor = PATTERNS_ONLY,
        max_pending_rows: int | None = None,
    ) -> None:
        self._database = database
        self._redactor = redactor
        self._flush_rows = flush_rows
        self._max_pending = max_pending_rows or 2 * flush_rows
        self._flush_interval_s = flush_interval_s
        self._on_flush = on_flush
        self._pending: list[StoreEvent] = []
        self._lock = anyio.Lock()
        self._full = anyio.Event()
        self.flushes = 0
        self.events_written = 0
        self.batches_spooled = 0  # written to disk first: the file was held by another process

    async def run(self, events: MemoryObjectReceiveStream[StoreEvent]) -> None:
        """Consume events until every sender has closed, then flush what is left."""
        closed = anyio.Event()
        try:
            async with self._database.session():
                try:
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._commit_loop, closed)
                        async with events:
                            async for event in events:
                                self._pending.append(event)
                                self._take_queued(events)
                                if len(self._pending) >= self._flush_rows:
                                    self._full.set()
                                if len(self._pending) >= self._max_pending:
                                    await self.flush()  # waits for the commit under way
                        closed.set()
                        self._full.set()
                finally:
                    with anyio.CancelScope(shield=True):  # what was received is written
                        await self.flush()
        finally:
            closed.set()

    def _take_queued(self, events: MemoryObjectReceiveStream[StoreEvent]) -> None:
        """Take the events already queued, up to `max_pending`, without a trip through the
        event loop for each (`receive` makes one per event: one per turn)."""
        pending = self._pending
        while len(pending) < self._max_pending:
            try:
                pending.append(events.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                return  # nothing queued, or every sender closed: `async for` sees which

    async def _commit_loop(self, closed: anyio.Event) -> None:
        while not closed.is_set():
            with anyio.move_on_after(self._flush_interval_s) as timer:
                await self._full.wait()
            self._full = anyio.Event()
            await self.flush(full_batches_only=not timer.cancelled_caught)

    async def flush(self, *, full_batches_only: bool = False) -> None:
        """Commit what is pending in batches of at most `flush_rows` (with `full_batches_only`,
        a smaller rest waits for the timer); events go on arriving meanwhile."""
        async with self._lock:
            wrote = False
            # What arrives while a batch commits waits for a full batch or the next timer: a
            # flush that chased it would commit a trickle of small transactions back to back.
            owed = 0 if full_batches_only else len(self._pending)
            while self._pending and (len(self._pending) >= self._flush_rows or owed > 0):
                batch = self._pending[: self._flush_rows]
                del self._pending[: self._flush_rows]
                owed -= len(batch)
                await self._commit(batch)
                wrote = True
            if not wrote:
                await self._database.settle()

    async def _commit(self, batch: list[StoreEvent]) -> None:
        encoded = await anyio.to_thread.run_sync(encode_batch, batch, self._redactor)
        if not await self._database.write(encoded):
            self.batches_spooled += 1
        self.flushes += 1
        self.events_written += len(batch)
        if self._on_flush is not None:
            self._on_flush(len(batch))


def write_batch(
    conn: duckdb.DuckDBPyConnection,
    batch: Sequence[StoreEvent],
    redactor: Redactor = PATTERNS_ONLY,
) -> None:
    """Apply one batch of events in a single transaction, its texts redacted."""
    encoded = encode_batch(batch, redactor)
    with transaction(conn):
        apply_batch(conn, encoded)
