"""Structs to Arrow tables: DuckDB ingests Arrow batches at millions of rows per second."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import msgspec
import pyarrow as pa

from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.store.rows import (
    AssessmentRow,
    ErrorRow,
    JudgeFailureRow,
    MessageRow,
    SimulatorCheckRow,
    VerdictRow,
)

# The columns that can carry text from a provider, a proxy or a config (model replies, judge
# reasoning, error bodies, endpoint names, settings): every write passes them through the
# redactor, so an echoed API key never reaches the file.
REDACTED_COLUMNS = frozenset(
    {
        "content",
        "reasoning",
        "message",
        "error",
        "gateway",
        "judge_model",
        "settings",
        "evidence",
    }
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
# Python types to the Arrow types of their columns (integers are the tables' INTEGER columns).
_ARROW_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int32(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: TIMESTAMP,
}


def arrow_schema(struct: type[msgspec.Struct]) -> pa.Schema:
    """The Arrow schema of a row Struct, its fields in order: the Struct is the one place a
    row's columns are written down."""
    return pa.schema(
        [
            (field.name, _arrow_type(field.type))
            for field in msgspec.inspect.type_info(struct).fields
        ]
    )


def _arrow_type(info: msgspec.inspect.Type) -> pa.DataType:
    if isinstance(info, msgspec.inspect.UnionType):
        (info,) = [
            member for member in info.types if not isinstance(member, msgspec.inspect.NoneType)
        ]
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        return pa.list_(_arrow_type(info.item_type))
    simple = {
        msgspec.inspect.StrType: str,
        msgspec.inspect.IntType: int,
        msgspec.inspect.FloatType: float,
        msgspec.inspect.BoolType: bool,
        msgspec.inspect.DateTimeType: datetime,
    }
    for kind, python_type in simple.items():
        if isinstance(info, kind):
            return _ARROW_TYPES[python_type]
    raise TypeError(f"no Arrow column type for {info}")


MESSAGES = arrow_schema(MessageRow)
ERRORS = arrow_schema(ErrorRow)
VERDICTS = arrow_schema(VerdictRow)
JUDGE_FAILURES = arrow_schema(JudgeFailureRow)
ASSESSMENTS = arrow_schema(AssessmentRow)
SIMULATOR_CHECKS = arrow_schema(SimulatorCheckRow)


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
