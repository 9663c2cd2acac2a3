"""What a "failed" needs beside it: the corpus's pass rule across judges and each judge's
assessment of the conversations on a page, read in one query for the page's rows only."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import msgspec

from rapport.store.viewer_reads import Assessment

DEFAULT_RULE = "all"  # what side_judgement applies when meta names none


def pass_rule(conn: duckdb.DuckDBPyConnection) -> str:
    found = conn.execute("SELECT value FROM meta WHERE key = 'pass_rule'").fetchone()
    return str(found[0]) if found else DEFAULT_RULE


def assessments_of(
    conn: duckdb.DuckDBPyConnection, conversation_ids: Sequence[str]
) -> dict[str, list[Assessment]]:
    """Each conversation's assessments of its assistant side, by judge."""
    found: dict[str, list[Assessment]] = {}
    if not conversation_ids:
        return found
    for cid, judge, score, passed, safety, threshold, scores, gates in conn.execute(
        "SELECT conversation_id, judge_id, score, passed, safety_failed, pass_threshold, "
        "category_scores, failed_gates FROM assessments "
        "WHERE conversation_id IN (SELECT unnest(?)) ORDER BY conversation_id, judge_id",
        [list(conversation_ids)],
    ).fetchall():
        found.setdefault(cid, []).append(
            Assessment(judge, score, passed, safety, threshold, msgspec.json.decode(scores), gates)
        )
    return found
