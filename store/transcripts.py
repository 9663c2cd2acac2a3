"""Transcripts as (role, content) pairs, for the stages that read whole conversations."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from rapport.engine.types import TRUNCATED_FINISH_REASONS

# The finish reasons of a reply cut by the token budget, as a SQL list.
TRUNCATED_SQL = ", ".join(f"'{reason}'" for reason in sorted(TRUNCATED_FINISH_REASONS))


def load_transcripts(
    conn: duckdb.DuckDBPyConnection, conversation_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """Every listed conversation's messages in turn order (an empty list when it has none)."""
    transcripts: dict[str, list[tuple[str, str]]] = {cid: [] for cid in conversation_ids}
    for cid, role, content in conn.execute(
        "SELECT conversation_id, role, content FROM messages "
        "WHERE conversation_id IN (SELECT unnest(?)) ORDER BY conversation_id, turn_index",
        [list(conversation_ids)],
    ).fetchall():
        transcripts[cid].append((role, content))
    return transcripts
