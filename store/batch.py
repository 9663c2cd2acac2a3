"""One batch of store events as Arrow tables, and how it is applied in one transaction.

Encoding (Structs to Arrow, texts redacted) is apart from applying it, so a batch that cannot be
written yet (another process holds the file) waits on disk as the same Arrow tables
(store.spool) and is applied later exactly as it would have been.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import duckdb
import msgspec
import pyarrow as pa

from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.store.arrow_rows import (
    ASSESSMENTS,
    ERRORS,
    JUDGE_FAILURES,
    MESSAGES,
    VERDICTS,
    arrow_schema,
    insert_table,
    structs_to_arrow,
)
from rapport.store.rows import ConversationUpdate, StoreEvent
from rapport.store.sides import SIDE_TABLES

FINISHED = frozenset({"complete", "failed"})

# Table name → the verb its rows are written with; applied in this order.
_VERBS = {
    "messages": "INSERT OR IGNORE",
    "errors": "INSERT",
    "conversation_changes": "UPDATE",
    "verdicts": "INSERT OR IGNORE",
    "judge_failures": "INSERT",
    "assessments": "INSERT OR REPLACE",
    "simulator_verdicts": "INSERT OR IGNORE",
    "simulator_judge_failures": "INSERT",
    "simulator_assessments": "INSERT OR REPLACE",
}

Encoded = dict[str, pa.Table]


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


CONVERSATION_CHANGES = arrow_schema(ConversationChange)


def encode_batch(batch: Sequence[StoreEvent], redactor: Redactor = PATTERNS_ONLY) -> Encoded:
    """The batch's rows as Arrow tables by destination, only the non-empty ones."""
    rows: dict[str, tuple[list[msgspec.Struct], pa.Schema]] = {
        "messages": ([e.message for e in batch if e.message is not None], MESSAGES),
        "errors": ([e.error for e in batch if e.error is not None], ERRORS),
        "conversation_changes": (
            fold_updates(e.update for e in batch if e.update is not None),
            CONVERSATION_CHANGES,
        ),
    }
    for side, tables in SIDE_TABLES.items():
        events = [e for e in batch if e.side == side]
        rows[tables.verdicts] = ([row for e in events for row in e.verdicts], VERDICTS)
        rows[tables.judge_failures] = (
            [row for e in events for row in e.judge_failures],
            JUDGE_FAILURES,
        )
        rows[tables.assessments] = (
            [e.assessment for e in events if e.assessment is not None],
            ASSESSMENTS,
        )
    return {
        name: structs_to_arrow(structs, schema, redactor)
        for name, (structs, schema) in rows.items()
        if structs
    }


def apply_batch(conn: duckdb.DuckDBPyConnection, encoded: Encoded) -> None:
    """Write an encoded batch inside the caller's transaction."""
    for name, verb in _VERBS.items():
        table = encoded.get(name)
        if table is None or table.num_rows == 0:
            continue
        if verb == "UPDATE":
            _apply_changes(conn, table)
        else:
            insert_table(conn, name, table, verb)


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
