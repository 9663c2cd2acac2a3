"""Read-only SQL over the corpus: anything that could write is refused before it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import msgspec

from store.database import connect_for_reading
from store.errors import StoreError

READ_ONLY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


class QueryResult(msgspec.Struct, frozen=True):
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def check_read_only(sql: str) -> None:
    """Refuse anything but SELECT/EXPLAIN (so no DROP, INSERT, ATTACH, COPY ... TO, SET...)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise StoreError(f"invalid SQL: {_one_line(error)}") from None
    if not statements:
        raise StoreError("no SQL statement given")
    for statement in statements:
        if statement.type not in READ_ONLY_STATEMENTS:
            kind = statement.type.name
            raise StoreError(f"refused: `rapport sql` is read-only and this is a {kind} statement")


def query(path: Path, sql: str) -> QueryResult:
    """Run read-only SQL on the Rapport database file; returns the last statement's result."""
    check_read_only(sql)
    conn = connect_for_reading(path)
    try:
        result = None
        for statement in duckdb.extract_statements(sql):
            result = conn.execute(statement.query)
        assert result is not None
        columns = tuple(column[0] for column in result.description or ())
        return QueryResult(columns, tuple(result.fetchall()))
    except duckdb.Error as error:
        raise StoreError(f"query failed: {_one_line(error)}") from None
    finally:
        conn.close()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
