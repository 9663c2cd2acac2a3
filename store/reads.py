"""Typed reads of the corpus: Structs, not tuples, for every stage and tool that looks at it.

`Turn` is a stored message as every stage that reads conversations sees it (resuming, judges,
datasets, reports, evaluations); `MessageRow` (store.rows) is the same message as the writer
stores it, and `ChatMessage` (engine.types) a message as it is sent to a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import msgspec

from rapport.store.conversation_filters import filter_clauses
from rapport.store.database import connect
from rapport.store.rows import VerdictRow

S = TypeVar("S", bound=msgspec.Struct)

DEFAULT_PAGE = 100


class Turn(msgspec.Struct, frozen=True):
    """One stored message of a transcript, in turn order."""

    role: str  # user | assistant
    content: str
    turn_index: int = 0
    exchange: int = 0
    finish_reason: str | None = None  # `length` / `max_tokens`: cut by the token budget
    final: bool = False  # the speaker ended the conversation with it


class ConversationSummary(msgspec.Struct, frozen=True):
    """One corpus conversation as `conversation_overview` shows it."""

    conversation_id: str
    status: str
    end_reason: str | None
    target_turns: int
    num_messages: int
    topic_categories: list[str]
    flaw_names: list[str]
    writing_style: str | None
    plan_id: str
    run_id: str | None
    exchanges: int
    prompt_tokens: int
    completion_tokens: int


class ConversationFilter(msgspec.Struct, frozen=True):
    """Which conversations to list; None matches any."""

    status: str | None = None
    run_id: str | None = None
    plan_id: str | None = None
    topic: str | None = None  # one of the scenario's topic categories
    flaw: str | None = None


class CorpusStats(msgspec.Struct, frozen=True):
    conversations: int
    by_status: dict[str, int]
    messages: int
    prompt_tokens: int
    completion_tokens: int


def _structs(
    conn: duckdb.DuckDBPyConnection, kind: type[S], sql: str, params: Sequence[Any] = ()
) -> list[S]:
    cursor = conn.execute(sql, list(params))
    names = [column[0] for column in cursor.description]
    return msgspec.convert(
        [dict(zip(names, row, strict=True)) for row in cursor.fetchall()], list[kind]
    )


def conversations(
    conn: duckdb.DuckDBPyConnection,
    where: ConversationFilter | None = None,
    *,
    limit: int = DEFAULT_PAGE,
    offset: int = 0,
) -> list[ConversationSummary]:
    """One page of corpus conversations matching `where`, in conversation_id order."""
    clauses, params = filter_clauses(where if where is not None else ConversationFilter())
    clauses.insert(0, "true")
    fields = ", ".join(ConversationSummary.__struct_fields__)
    return _structs(
        conn,
        ConversationSummary,
        f"SELECT {fields} FROM conversation_overview WHERE {' AND '.join(clauses)} "
        "ORDER BY conversation_id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )


def transcripts(
    conn: duckdb.DuckDBPyConnection, conversation_ids: Sequence[str]
) -> dict[str, list[Turn]]:
    """Every listed conversation's turns in order (an empty list when it has none)."""
    found: dict[str, list[Turn]] = {cid: [] for cid in conversation_ids}
    for cid, role, content, turn_index, exchange, finish_reason, final in conn.execute(
        "SELECT conversation_id, role, content, turn_index, exchange, finish_reason, final "
        "FROM messages WHERE conversation_id IN (SELECT unnest(?)) "
        "ORDER BY conversation_id, turn_index",
        [list(conversation_ids)],
    ).fetchall():
        found[cid].append(Turn(role, content, turn_index, exchange, finish_reason, final))
    return found


def transcript(conn: duckdb.DuckDBPyConnection, conversation_id: str) -> list[Turn]:
    return transcripts(conn, [conversation_id])[conversation_id]


def verdicts(
    conn: duckdb.DuckDBPyConnection,
    *,
    conversation_id: str | None = None,
    judge_id: str | None = None,
) -> list[VerdictRow]:
    """Stored verdicts, by conversation, judge and criterion."""
    fields = ", ".join(VerdictRow.__struct_fields__)
    return _structs(
        conn,
        VerdictRow,
        f"SELECT {fields} FROM verdicts "
        "WHERE conversation_id = coalesce(?, conversation_id) AND judge_id = coalesce(?, judge_id) "
        "ORDER BY conversation_id, judge_id, criterion_id",
        [conversation_id, judge_id],
    )


def corpus_stats(conn: duckdb.DuckDBPyConnection) -> CorpusStats:
    """Counts of the corpus (evaluation conversations left out, as in every view)."""
    by_status = dict(conn.execute("SELECT status, conversations FROM status_counts").fetchall())
    messages, prompt, completion = conn.execute(
        "SELECT count(*), coalesce(sum(prompt_tokens), 0)::BIGINT, "
        "coalesce(sum(completion_tokens), 0)::BIGINT FROM messages "
        "WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)"
    ).fetchone()
    return CorpusStats(sum(by_status.values()), by_status, messages, prompt, completion)


class ThroughputReadings(msgspec.Struct, frozen=True):
    """What `rapport bench throughput` reads back from a case's database."""

    started: float  # epoch seconds of the first and last stored message
    ended: float
    per_second: list[tuple[int, int, int | None]]  # (second from start, messages, tokens)
    requests: int | None
    rate_limited: int | None
    retries: int | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    failed: int
    succeeded: int | None
    learned_rpm: int | None
    learned_in_flight: int | None


def throughput_readings(db: Path) -> ThroughputReadings:
    with connect(db, read_only=True) as conn:
        started, ended = conn.execute(
            "SELECT epoch(min(created_at)), epoch(max(created_at)) FROM messages"
        ).fetchone()
        per_second = conn.execute(
            """
            SELECT floor(epoch(created_at) - ?)::INTEGER AS second, count(*),
                   sum(prompt_tokens + completion_tokens)::BIGINT
            FROM messages GROUP BY 1 ORDER BY 1
            """,
            [started],
        ).fetchall()
        gateway = conn.execute(
            "SELECT sum(requests)::BIGINT, sum(rate_limited)::BIGINT, sum(retries)::BIGINT, "
            "max(latency_p50_ms), max(latency_p99_ms) FROM gateway_stats"
        ).fetchone()
        tail = conn.execute(
            "SELECT (SELECT count(*) FROM conversations WHERE status = 'failed'), "
            "sum(succeeded)::BIGINT, max(rpm_limit), max(max_in_flight) FROM gateway_stats"
        ).fetchone()
    return ThroughputReadings(started, ended, per_second, *gateway, *tail)
