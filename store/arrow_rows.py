"""Structs to Arrow tables: DuckDB ingests Arrow batches at millions of rows per second."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pyarrow as pa


def structs_to_arrow(rows: Sequence[msgspec.Struct], schema: pa.Schema) -> pa.Table:
    """Columns in `schema` order, taken from the Structs' fields of the same names."""
    columns = {name: [getattr(row, name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


MESSAGES = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("turn_index", pa.int32()),
        ("role", pa.string()),
        ("content", pa.string()),
        ("exchange", pa.int32()),
        ("final", pa.bool_()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("latency_ms", pa.float64()),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us")),
    ]
)

ERRORS = pa.schema(
    [
        ("run_id", pa.string()),
        ("conversation_id", pa.string()),
        ("turn_index", pa.int32()),
        ("role", pa.string()),
        ("kind", pa.string()),
        ("message", pa.string()),
        ("created_at", pa.timestamp("us")),
    ]
)

CONVERSATION_CHANGES = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("status", pa.string()),
        ("run_id", pa.string()),
        ("started_at", pa.timestamp("us")),
        ("completed_at", pa.timestamp("us")),
        ("end_reason", pa.string()),
        ("num_messages", pa.int32()),
        ("error", pa.string()),
    ]
)


def columns_sql(schema: pa.Schema) -> str:
    return ", ".join(schema.names)
