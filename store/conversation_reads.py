"""Conversations with their turns and verdicts, a page at a time, for the public API's
`Corpus.conversations` (a notebook walks the corpus without writing SQL)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import msgspec

from rapport.store.reads import ConversationSummary, Turn, transcripts
from rapport.store.rows import VerdictRow


class ConversationRecord(msgspec.Struct, frozen=True):
    """One corpus conversation: what `conversation_overview` says of it, its turns in order,
    and every judge's verdicts on its assistant side (empty before judging)."""

    summary: ConversationSummary
    turns: tuple[Turn, ...]
    verdicts: tuple[VerdictRow, ...]
    passed: bool | None  # under the corpus's pass rule across judges; None: not judged


def conversation_page(
    conn: duckdb.DuckDBPyConnection,
    *,
    status: str | None = None,
    passed: bool | None = None,
    after: str | None = None,
    limit: int,
) -> list[ConversationRecord]:
    """Up to `limit` corpus conversations after the id `after`, in id order, matching `status`
    and `passed` (None: any)."""
    clauses, params = ["true"], []
    if status is not None:
        clauses.append("o.status = ?")
        params.append(status)
    if passed is not None:
        clauses.append("j.passed = ?")
        params.append(passed)
    if after is not None:
        clauses.append("o.conversation_id > ?")
        params.append(after)
    fields = ", ".join(f"o.{name}" for name in ConversationSummary.__struct_fields__)
    cursor = conn.execute(
        f"SELECT {fields}, j.passed FROM conversation_overview o "
        "LEFT JOIN conversation_judgement j USING (conversation_id) "
        f"WHERE {' AND '.join(clauses)} ORDER BY o.conversation_id LIMIT ?",
        [*params, limit],
    )
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    ids = [row["conversation_id"] for row in rows]
    turns = transcripts(conn, ids)
    verdicts = _verdicts(conn, ids)
    return [
        ConversationRecord(
            summary=msgspec.convert(
                {k: v for k, v in row.items() if k != "passed"}, ConversationSummary
            ),
            turns=tuple(turns[row["conversation_id"]]),
            verdicts=tuple(verdicts.get(row["conversation_id"], ())),
            passed=row["passed"],
        )
        for row in rows
    ]


def _verdicts(conn: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[str, list[VerdictRow]]:
    fields = ", ".join(VerdictRow.__struct_fields__)
    cursor = conn.execute(
        f"SELECT {fields} FROM verdicts WHERE conversation_id IN (SELECT unnest(?)) "
        "ORDER BY conversation_id, judge_id, criterion_id",
        [list(ids)],
    )
    names = [column[0] for column in cursor.description]
    found: dict[str, list[VerdictRow]] = {}
    for row in cursor.fetchall():
        verdict = msgspec.convert(dict(zip(names, row, strict=True)), VerdictRow)
        found.setdefault(verdict.conversation_id, []).append(verdict)
    return found
