"""The batches a judge sent through a provider's batch API, and their items' outcomes: what
lets a killed `rapport judge --batch` re-attach to its open batches instead of paying for the
same items again, and reuse the items already answered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import msgspec

from rapport.store.transaction import transaction

OPEN = "submitted"


class BatchRecord(msgspec.Struct, frozen=True):
    batch_id: str
    judge_id: str
    provider: str
    model: str
    items: int
    run_id: str
    submitted_at: datetime


class BatchItemRow(msgspec.Struct, frozen=True):
    """One request in a batch: the question it asks about a conversation."""

    custom_id: str
    conversation_id: str
    criteria: tuple[str, ...]
    window_index: int
    attempt: int


class ItemOutcome(msgspec.Struct, frozen=True):
    """How an item ended: `answered` with the reply's text, or `failed` / `expired` /
    `canceled` with the provider's error."""

    custom_id: str
    status: str
    reply: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None


def record_batch(
    conn: duckdb.DuckDBPyConnection, batch: BatchRecord, items: Sequence[BatchItemRow]
) -> None:
    """A batch just submitted and its items, in one transaction (before anything else waits
    on it: a kill after this re-attaches to it)."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO judge_batches (batch_id, judge_id, provider, model, status, items, "
            "run_id, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                batch.batch_id, batch.judge_id, batch.provider, batch.model, OPEN,
                batch.items, batch.run_id, batch.submitted_at,
            ],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO judge_batch_items (batch_id, custom_id, judge_id, conversation_id, "
            "criteria, window_index, attempt, status, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
            [
                [
                    batch.batch_id, item.custom_id, batch.judge_id, item.conversation_id,
                    list(item.criteria), item.window_index, item.attempt, batch.submitted_at,
                ]
                for item in items
            ],
        )  # fmt: skip


def open_batches(conn: duckdb.DuckDBPyConnection, judge_id: str) -> list[BatchRecord]:
    """This judge's batches that were submitted and not seen to end (a killed run's), oldest
    first."""
    rows = conn.execute(
        "SELECT batch_id, judge_id, provider, model, items, coalesce(run_id, ''), submitted_at "
        "FROM judge_batches WHERE judge_id = ? AND status = ? ORDER BY submitted_at, batch_id",
        [judge_id, OPEN],
    ).fetchall()
    return [BatchRecord(*row) for row in rows]


def record_batch_end(
    conn: duckdb.DuckDBPyConnection,
    batch_id: str,
    status: str,
    outcomes: Sequence[ItemOutcome],
    at: datetime,
) -> None:
    """A batch has ended (or is given up on, `lost`): each item's outcome and the counts, in
    one transaction. Items the provider did not report stay `pending` and are asked again."""
    with transaction(conn):
        if outcomes:
            _update_items(conn, batch_id, outcomes, at)
        answered = sum(o.status == "answered" for o in outcomes)
        conn.execute(
            "UPDATE judge_batches SET status = ?, succeeded = ?, failed = ?, ended_at = ? "
            "WHERE batch_id = ?",
            [status, answered, len(outcomes) - answered, at, batch_id],
        )


def _update_items(
    conn: duckdb.DuckDBPyConnection,
    batch_id: str,
    outcomes: Sequence[ItemOutcome],
    at: datetime,
) -> None:
    conn.executemany(
        "UPDATE judge_batch_items SET status = ?, reply = ?, error = ?, prompt_tokens = ?, "
        "completion_tokens = ?, cache_read_tokens = ?, cache_write_tokens = ?, "
        "cost_usd = ?, updated_at = ? WHERE batch_id = ? AND custom_id = ?",
        [
            [
                o.status, o.reply, o.error, o.prompt_tokens, o.completion_tokens,
                o.cache_read_tokens, o.cache_write_tokens, o.cost_usd, at, batch_id,
                o.custom_id,
            ]
            for o in outcomes
        ],
    )  # fmt: skip


def answered_items(
    conn: duckdb.DuckDBPyConnection, judge_id: str, conversation_ids: Sequence[str]
) -> dict[str, ItemOutcome]:
    """custom_id -> reply, of the items about these conversations that some batch answered
    (the latest, if several)."""
    rows = conn.execute(
        "SELECT custom_id, status, reply, error, prompt_tokens, completion_tokens, "
        "cache_read_tokens, cache_write_tokens, cost_usd FROM judge_batch_items "
        "WHERE judge_id = ? AND status = 'answered' "
        "AND conversation_id IN (SELECT unnest(?)) ORDER BY updated_at",
        [judge_id, list(conversation_ids)],
    ).fetchall()
    return {
        row[0]: ItemOutcome(
            row[0], row[1], row[2], row[3], *(value or 0 for value in row[4:8]), cost_usd=row[8]
        )
        for row in rows
    }


def batch_item_ids(conn: duckdb.DuckDBPyConnection, batch_id: str) -> list[str]:
    """The custom_ids a batch was submitted with."""
    rows = conn.execute(
        "SELECT custom_id FROM judge_batch_items WHERE batch_id = ? ORDER BY custom_id",
        [batch_id],
    ).fetchall()
    return [row[0] for row in rows]


def judge_failure_counts(
    conn: duckdb.DuckDBPyConnection, judge_id: str, table: str = "judge_failures"
) -> dict[str, int]:
    """Judge failures recorded per conversation (in `table`: one side's failures): a failure
    recorded means the question is to be asked afresh, not answered again from the batch that
    failed it."""
    rows = conn.execute(
        f"SELECT conversation_id, count(*) FROM {table} WHERE judge_id = ? GROUP BY ALL",
        [judge_id],
    ).fetchall()
    return {conversation_id: count for conversation_id, count in rows}
