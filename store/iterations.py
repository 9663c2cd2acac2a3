"""`rapport iterate`'s memory: one row per iteration of a domain (its plan and its figures), so
the next iteration can show what changed."""

from __future__ import annotations

from datetime import datetime

import duckdb
import msgspec

from rapport.store.reads import Turn, transcripts

QUOTES_PER_CRITERION = 2


class IterationRow(msgspec.Struct, frozen=True):
    domain: str
    iteration: int
    plan_id: str
    domain_fingerprint: str
    count: int
    figures: str  # JSON of reports.iteration_figures.IterationFigures
    created_at: datetime


def latest_iterations(
    conn: duckdb.DuckDBPyConnection, domain: str, limit: int = 2
) -> list[IterationRow]:
    """The domain's latest iterations, newest first."""
    rows = conn.execute(
        "SELECT domain, iteration, plan_id, domain_fingerprint, count, figures, created_at "
        "FROM iterations WHERE domain = ? ORDER BY iteration DESC LIMIT ?",
        [domain, limit],
    ).fetchall()
    return [IterationRow(*row) for row in rows]


def record_iteration(
    conn: duckdb.DuckDBPyConnection,
    domain: str,
    plan_id: str,
    fingerprint: str,
    count: int,
    figures: str,
    at: datetime,
) -> int:
    """Store this iteration's figures. The same plan and size as the latest iteration is the
    same iteration (re-run, nothing changed): its figures are updated, no new row is added."""
    latest = latest_iterations(conn, domain, 1)
    if latest and latest[0].plan_id == plan_id and latest[0].count == count:
        number = latest[0].iteration
        conn.execute(
            "UPDATE iterations SET figures = ? WHERE domain = ? AND iteration = ?",
            [figures, domain, number],
        )
        return number
    number = latest[0].iteration + 1 if latest else 1
    conn.execute(
        "INSERT INTO iterations VALUES (?, ?, ?, ?, ?, ?, ?)",
        [domain, number, plan_id, fingerprint, count, figures, at],
    )
    return number


def plan_pass_rate(
    conn: duckdb.DuckDBPyConnection, plan_id: str
) -> tuple[int, float | None, float | None]:
    """(judged conversations, pass rate, mean score) of one plan, by the stored pass rule."""
    judged, rate, mean = conn.execute(
        "SELECT count(*), avg(passed::INTEGER), avg(mean_score) FROM judged_overview "
        "WHERE plan_id = ?",
        [plan_id],
    ).fetchone()
    return int(judged), rate, mean


def plan_status_counts(conn: duckdb.DuckDBPyConnection, plan_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM conversations WHERE plan_id = ? GROUP BY 1", [plan_id]
    ).fetchall()
    return {status: int(n) for status, n in rows}


def plan_criterion_failures(
    conn: duckdb.DuckDBPyConnection, plan_id: str
) -> list[tuple[str, int, int]]:
    """(criterion, NO verdicts, YES or NO verdicts) over every judge, for one plan."""
    rows = conn.execute(
        """
        SELECT v.criterion_id, count(*) FILTER (WHERE v.answer = 'NO'),
               count(*) FILTER (WHERE v.answer IN ('YES', 'NO'))
        FROM verdicts v JOIN conversations c USING (conversation_id)
        WHERE c.plan_id = ? GROUP BY 1 ORDER BY 1
        """,
        [plan_id],
    ).fetchall()
    return [(cid, int(no), int(answered)) for cid, no, answered in rows]


def plan_failure_quotes(
    conn: duckdb.DuckDBPyConnection, plan_id: str
) -> dict[str, list[tuple[str, str]]]:
    """criterion -> up to two (conversation, judge's reasoning) of its NO verdicts."""
    quotes: dict[str, list[tuple[str, str]]] = {}
    for cid, conversation_id, reasoning in conn.execute(
        """
        SELECT v.criterion_id, v.conversation_id, coalesce(v.reasoning, '')
        FROM verdicts v JOIN conversations c USING (conversation_id)
        WHERE c.plan_id = ? AND v.answer = 'NO'
        QUALIFY row_number() OVER (PARTITION BY v.criterion_id
                                   ORDER BY v.conversation_id, v.judge_id) <= ?
        """,
        [plan_id, QUOTES_PER_CRITERION],
    ).fetchall():
        quotes.setdefault(cid, []).append((conversation_id, reasoning))
    return quotes


def plan_pass_rates_by(
    conn: duckdb.DuckDBPyConnection, plan_id: str, column: str
) -> list[tuple[str, int, float]]:
    """(flaw or topic category, judged conversations, pass rate) for one plan, worst first."""
    if column not in ("flaw_names", "topic_categories"):
        raise ValueError(column)
    rows = conn.execute(
        f"""
        SELECT name, count(*), avg(passed::INTEGER) FROM (
            SELECT unnest(CASE WHEN len({column}) = 0 THEN ['(none)'] ELSE {column} END) AS name,
                   passed
            FROM judged_overview WHERE plan_id = ?
        ) GROUP BY name ORDER BY 3, 1
        """,
        [plan_id],
    ).fetchall()
    return [(name, int(n), float(rate)) for name, n, rate in rows]


def plan_transcripts(conn: duckdb.DuckDBPyConnection, plan_id: str) -> dict[str, list[Turn]]:
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT conversation_id FROM conversations WHERE plan_id = ? AND status = 'complete'",
            [plan_id],
        ).fetchall()
    ]
    return transcripts(conn, ids)
