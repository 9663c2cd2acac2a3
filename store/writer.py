"""The single writer actor: receives rows from every actor, commits them in batches."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import anyio
import duckdb
import msgspec
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream

from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.store.arrow_rows import (
    ASSESSMENTS,
    CONVERSATION_CHANGES,
    ERRORS,
    JUDGE_FAILURES,
    MESSAGES,
    VERDICTS,
    insert_table,
    structs_to_arrow,
)
from rapport.store.database import Database
from rapport.store.rows import ConversationUpdate, StoreEvent

FINISHED = frozenset({"complete", "failed"})


class ConversationChange(msgspec.Struct):
    """All updates of one conversation within a batch, folded into one row."""

    conversation_id: str
    status: str
    run_id: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    end_reason: str | None = None
    num_messages: int | None = None
    error: str | None = None


class StoreWriter:
    """Owns all writes of a run. A batch is flushed when it reaches `flush_rows` events or when
    `flush_interval_s` has passed, whichever comes first; each batch is one transaction.
    Every text a row carries passes through `redactor` on its way in (see store.arrow_rows)."""

    def __init__(
        self,
        database: Database,
        *,
        flush_rows: int,
        flush_interval_s: float,
        on_flush: Callable[[int], None] | None = None,
        redactor: Redactor = PATTERNS_ONLY,
    ) -> None:
        self._database = database
        self._redactor = redactor
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._on_flush = on_flush
        self._pending: list[StoreEvent] = []
        self._lock = anyio.Lock()
        self.flushes = 0
        self.events_written = 0

    async def run(self, events: MemoryObjectReceiveStream[StoreEvent]) -> None:
        """Consume events until every sender has closed, then flush what is left."""
        closed = anyio.Event()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._flush_on_timer, closed)
                async with events:
                    async for event in events:
                        self._pending.append(event)
                        if len(self._pending) >= self._flush_rows:
                            await self.flush()
                closed.set()
        finally:
            with anyio.CancelScope(shield=True):  # what was received is written, even on Ctrl-C
                await self.flush()

    async def _flush_on_timer(self, closed: anyio.Event) -> None:
        while not closed.is_set():
            with anyio.move_on_after(self._flush_interval_s):
                await closed.wait()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            await self._database.run(lambda conn: write_batch(conn, batch, self._redactor))
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
    messages = [event.message for event in batch if event.message is not None]
    errors = [event.error for event in batch if event.error is not None]
    verdicts = [row for event in batch for row in event.verdicts]
    failures = [row for event in batch for row in event.judge_failures]
    assessments = [event.assessment for event in batch if event.assessment is not None]
    changes = fold_updates(event.update for event in batch if event.update is not None)
    conn.execute("BEGIN TRANSACTION")
    try:
        if messages:
            insert_table(
                conn, "messages", structs_to_arrow(messages, MESSAGES, redactor), "INSERT OR IGNORE"
            )
        if errors:
            insert_table(conn, "errors", structs_to_arrow(errors, ERRORS, redactor))
        if changes:
            _apply_changes(conn, structs_to_arrow(changes, CONVERSATION_CHANGES, redactor))
        if verdicts:
            insert_table(
                conn, "verdicts", structs_to_arrow(verdicts, VERDICTS, redactor), "INSERT OR IGNORE"
            )
        if failures:
            insert_table(
                conn, "judge_failures", structs_to_arrow(failures, JUDGE_FAILURES, redactor)
            )
        if assessments:
            table = structs_to_arrow(assessments, ASSESSMENTS, redactor)
            insert_table(conn, "assessments", table, "INSERT OR REPLACE")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
            conn.execute("ROLLBACK")
        raise


def fold_updates(updates: Iterable[ConversationUpdate]) -> list[ConversationChange]:
    """One change per conversation: the latest status wins, timestamps accumulate."""
    folded: dict[str, ConversationChange] = {}
    for update in updates:
        change = folded.setdefault(
            update.conversation_id,
            ConversationChange(update.conversation_id, update.status, update.run_id),
        )
        change.status = update.status
        change.run_id = update.run_id
        if update.status == "running":
            change.started_at = update.at
        if update.status in FINISHED:
            change.completed_at = update.at
        if update.end_reason is not None:
            change.end_reason = update.end_reason
        if update.num_messages is not None:
            change.num_messages = update.num_messages
        change.error = update.error
    return list(folded.values())


def _apply_changes(conn: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    conn.register("incoming_changes", rows)
    try:
        conn.execute(
            """
            UPDATE conversations AS c SET
                status = u.status,
                run_id = u.run_id,
                started_at = coalesce(u.started_at, c.started_at),
                completed_at = CASE WHEN u.status IN ('complete', 'failed')
                                    THEN u.completed_at ELSE NULL END,
                end_reason = CASE WHEN u.status IN ('complete', 'failed')
                                  THEN u.end_reason ELSE NULL END,
                num_messages = coalesce(u.num_messages, c.num_messages),
                error = u.error
            FROM incoming_changes AS u
            WHERE c.conversation_id = u.conversation_id
            """
        )
    finally:
        conn.unregister("incoming_changes")
