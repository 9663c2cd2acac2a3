"""Transcripts as (role, content) pairs, for the stages that read whole conversations."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from rapport.engine.types import TRUNCATED_FINISH_REASONS
from rapport.store.reads import transcripts

# The finish reasons of a reply cut by the token budget, as a SQL list.
TRUNCATED_SQL = ", ".join(f"'{reason}'" for reason in sorted(TRUNCATED_FINISH_REASONS))


def load_transcripts(
    conn: duckdb.DuckDBPyConnection, conversation_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """Every listed conversation's (role, content) pairs in turn order, read as store.reads
    Turns (an empty list when it has none)."""
    return {
        cid: [turn.pair() for turn in turns]
        for cid, turns in transcripts(conn, conversation_ids).items()
    }
