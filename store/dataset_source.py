"""What the dataset stage reads: passing conversations with their transcripts, and the
provenance its card records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import msgspec

from rapport.store.arrow_rows import replace_rows
from rapport.store.reads import Turn, transcripts
from rapport.store.transcripts import TRUNCATED_SQL


class SourceConversation(msgspec.Struct, frozen=True):
    conversation_id: str
    plan_id: str
    mean_score: float
    messages: tuple[Turn, ...]
    truncated_exchanges: frozenset[int] = frozenset()  # 1-based; assistant turns cut short


def passing_conversations(
    conn: duckdb.DuckDBPyConnection,
    min_score: float | None,
    *,
    human_overrides: bool = False,
    reviewed_only: bool = False,
) -> list[SourceConversation]:
    """Complete conversations that pass by the stored pass rule (and `min_score`), except
    scenarios held out for evaluation. With `human_overrides`, people's pass/fail
    (`human_judgement`) decides wherever someone reviewed the conversation, judged or not;
    with `reviewed_only`, only reviewed conversations are kept."""
    rows = conn.execute(
        """
        SELECT c.conversation_id, c.plan_id, coalesce(j.mean_score, 0.0)
        FROM corpus_conversations c
        JOIN scenarios s USING (scenario_id)
        LEFT JOIN conversation_judgement j USING (conversation_id)
        LEFT JOIN human_judgement h USING (conversation_id)
        WHERE c.status = 'complete' AND NOT coalesce(s.held_out, false)
          AND CASE WHEN ? AND h.passed IS NOT NULL THEN h.passed
                   ELSE coalesce(j.passed AND j.mean_score >= coalesce(?, 0), false) END
          AND (NOT ? OR h.conversation_id IS NOT NULL)
        ORDER BY c.conversation_id
        """,
        [human_overrides, min_score, reviewed_only],
    ).fetchall()
    if not rows:
        return []
    ids = [row[0] for row in rows]
    turns = transcripts(conn, ids)
    truncated = truncated_assistant_exchanges(conn, ids)
    return [
        SourceConversation(
            cid, plan_id, float(score), tuple(turns[cid]), truncated.get(cid, frozenset())
        )
        for cid, plan_id, score in rows
    ]


def truncated_assistant_exchanges(
    conn: duckdb.DuckDBPyConnection, conversation_ids: Sequence[str]
) -> dict[str, frozenset[int]]:
    """Per conversation, the exchanges whose assistant reply was cut by the token budget."""
    found: dict[str, set[int]] = {}
    for cid, exchange in conn.execute(
        f"SELECT conversation_id, exchange FROM messages "
        f"WHERE role = 'assistant' AND finish_reason IN ({TRUNCATED_SQL}) "
        f"AND conversation_id IN (SELECT unnest(?))",
        [list(conversation_ids)],
    ).fetchall():
        found.setdefault(cid, set()).add(int(exchange))
    return {cid: frozenset(exchanges) for cid, exchanges in found.items()}


class ExampleRecord(msgspec.Struct, frozen=True):
    example_id: str
    conversation_id: str
    split: str
    first_exchange: int
    end_exchange: int
    num_tokens: int
    output_dir: str
    created_at: datetime


def save_examples(conn: duckdb.DuckDBPyConnection, records: Sequence[ExampleRecord]) -> None:
    replace_rows(conn, "examples", records)


def provenance(conn: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """Runs, backends, judges and the pass rule, for the dataset card."""
    runs = conn.execute(
        "SELECT run_id, user_backend, assistant_backend FROM runs WHERE command = 'generate' "
        "ORDER BY started_at"
    ).fetchall()
    judges = conn.execute(
        "SELECT DISTINCT judge_id, judge_model FROM verdicts ORDER BY 1"
    ).fetchall()
    rule = conn.execute("SELECT value FROM meta WHERE key = 'pass_rule'").fetchone()
    domains = conn.execute("SELECT DISTINCT domain FROM plans").fetchall()
    judged = conn.execute(
        "SELECT count(*), sum(passed::INTEGER) FROM conversation_judgement"
    ).fetchone()
    reviewed = conn.execute("SELECT count(*), sum(passed::INTEGER) FROM human_judgement").fetchone()
    return {
        "runs": runs,
        "judges": judges,
        "pass_rule": rule[0] if rule else "all",
        "domains": [d[0] for d in domains],
        "judged": int(judged[0] or 0),
        "passed": int(judged[1] or 0),
        "reviewed": int(reviewed[0] or 0),
        "reviewed_passed": int(reviewed[1] or 0),
    }
