"""Structs to Arrow tables: DuckDB ingests Arrow batches at millions of rows per second."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import msgspec
import pyarrow as pa

from rapport.config.secrets import PATTERNS_ONLY, Redactor

# The columns that can carry text from a provider, a proxy or a config (model replies, judge
# reasoning, error bodies, endpoint names, settings): every write passes them through the
# redactor, so an echoed API key never reaches the file.
REDACTED_COLUMNS = frozenset(
    {"content", "reasoning", "message", "error", "gateway", "judge_model", "settings"}
)


def structs_to_arrow(
    rows: Sequence[msgspec.Struct], schema: pa.Schema, redactor: Redactor = PATTERNS_ONLY
) -> pa.Table:
    """An Arrow table of Structs whose fields are `schema`'s columns, in the same order, with
    the REDACTED_COLUMNS passed through `redactor`.

    Rows are turned into tuples in C (`astuple`) and transposed with `zip`: this runs in the
    writer's thread while holding the GIL, so it must be cheap (the redactor scans only text
    that holds one of its trigger substrings).
    """
    if not rows:
        return schema.empty_table()
    fields = type(rows[0]).__struct_fields__
    if tuple(fields) != tuple(schema.names):
        raise ValueError(f"{type(rows[0]).__name__} fields {fields} do not match {schema.names}")
    columns = zip(*map(msgspec.structs.astuple, rows), strict=True)
    arrays = [
        pa.array(
            list(map(redactor.optional, column)) if field.name in REDACTED_COLUMNS else column,
            type=field.type,
        )
        for column, field in zip(columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


# TIMESTAMPTZ: the naive datetimes the rows carry are UTC (store.rows.utc_now).
TIMESTAMP = pa.timestamp("us", tz="UTC")

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
        ("created_at", TIMESTAMP),
        ("attempts", pa.int32()),
        ("finish_reason", pa.string()),
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
        ("created_at", TIMESTAMP),
    ]
)

CONVERSATION_CHANGES = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("status", pa.string()),
        ("run_id", pa.string()),
        ("started_at", TIMESTAMP),
        ("completed_at", TIMESTAMP),
        ("end_reason", pa.string()),
        ("num_messages", pa.int32()),
        ("error", pa.string()),
    ]
)


VERDICTS = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("judge_id", pa.string()),
        ("criterion_id", pa.string()),
        ("answer", pa.string()),
        ("reasoning", pa.string()),
        ("judge_model", pa.string()),
        ("created_at", TIMESTAMP),
    ]
)

JUDGE_FAILURES = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("judge_id", pa.string()),
        ("criterion_id", pa.string()),
        ("error", pa.string()),
        ("created_at", TIMESTAMP),
    ]
)

ASSESSMENTS = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("judge_id", pa.string()),
        ("score", pa.float64()),
        ("passed", pa.bool_()),
        ("safety_failed", pa.bool_()),
        ("pass_threshold", pa.float64()),
        ("category_scores", pa.string()),
        ("failed_gates", pa.list_(pa.string())),
        ("created_at", TIMESTAMP),
    ]
)


def columns_sql(schema: pa.Schema) -> str:
    return ", ".join(schema.names)


def insert_table(
    conn: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, verb: str = "INSERT"
) -> None:
    """`verb` (INSERT, INSERT OR IGNORE, INSERT OR REPLACE) an Arrow table into `table`,
    matching columns by name."""
    conn.register("incoming_rows", rows)
    try:
        columns = columns_sql(rows.schema)
        conn.execute(f"{verb} INTO {table} ({columns}) SELECT {columns} FROM incoming_rows")
    finally:
        conn.unregister("incoming_rows")


def replace_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    rows: Sequence[msgspec.Struct],
    redactor: Redactor = PATTERNS_ONLY,
) -> None:
    """INSERT OR REPLACE Structs into `table`, matching columns by field name, with the
    REDACTED_COLUMNS passed through `redactor`."""
    if rows:
        records = [msgspec.structs.asdict(row) for row in rows]
        for record in records:
            for name in REDACTED_COLUMNS.intersection(record):
                record[name] = redactor.optional(record[name])
        batch = pa.Table.from_pylist(records)
        insert_table(conn, table, batch, "INSERT OR REPLACE")
