"""What a dataset build left out, and why: one row per (output, conversation, reason) in
`dataset_exclusions`, replaced whole for an output each time it is rebuilt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import msgspec

from rapport.store.arrow_rows import replace_rows
from rapport.store.transaction import transaction


class ExclusionRow(msgspec.Struct, frozen=True):
    conversation_id: str
    output: str  # the build's --out folder, resolved
    reason: str  # simulator_failed, duplicate, repetitive, …
    detail: str | None
    created_at: datetime


def replace_exclusions(
    conn: duckdb.DuckDBPyConnection, output: str, rows: Sequence[ExclusionRow]
) -> None:
    """The exclusions of `output` become `rows`, in one transaction (a rebuild of the same
    folder never leaves the last build's reasons beside this one's)."""
    with transaction(conn):
        conn.execute("DELETE FROM dataset_exclusions WHERE output = ?", [output])
        replace_rows(conn, "dataset_exclusions", rows)
