"""What the dataset stage reads: passing conversations with their transcripts, and the
provenance its card records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import msgspec

from store.arrow_rows import replace_rows
from store.transcripts import load_transcripts


class SourceConversation(msgspec.Struct, frozen=True):
    conversation_id: str
    plan_id: str
    mean_score: float
    messages: tuple[tuple[str, str], ...]


def passing_conversations(
    conn: duckdb.DuckDBPyConnection, min_score: float | None
) -> list[SourceConversation]:
    """Complete conversations that pass by the stored pass rule (and `min_score`), except
    scenarios held out for evaluation."""
    rows = conn.execute(
        """
        SELECT c.conversation_id, c.plan_id, j.mean_score
        FROM corpus_conversations c
        JOIN conversation_judgement j USING (conversation_id)
        JOIN scenarios s USING (scenario_id)
        WHERE c.status = 'complete' AND j.passed AND NOT coalesce(s.held_out, false)
          AND j.mean_score >= coalesce(?, 0)
        ORDER BY c.conversation_id
        """,
        [min_score],
    ).fetchall()
    if not rows:
        return []
    transcripts = load_transcripts(conn, [row[0] for row in rows])
    return [
        SourceConversation(cid, plan_id, float(score), tuple(transcripts[cid]))
        for cid, plan_id, score in rows
    ]


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
    return {
        "runs": runs,
        "judges": judges,
        "pass_rule": rule[0] if rule else "all",
        "domains": [d[0] for d in domains],
        "judged": int(judged[0] or 0),
        "passed": int(judged[1] or 0),
    }
