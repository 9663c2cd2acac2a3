"""Read-only SQL over the corpus: anything that could write is refused before it runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import duckdb
import msgspec

from rapport.config.constants import SQL_FETCH_ROWS
from rapport.store.database import connect_for_reading
from rapport.store.errors import StoreError

READ_ONLY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


class QueryResult(msgspec.Struct, frozen=True):
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool = False  # more rows matched than the limit let through


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
            kind = statement_kind(statement)
            article = "an" if kind[0] in "AEIOU" else "a"
            raise StoreError(
                f"refused: `rapport sql` is read-only and this is {article} {kind} statement"
            )


def statement_kind(statement: duckdb.Statement) -> str:
    """The statement's kind as its author wrote it: DuckDB files INSTALL under LOAD."""
    kind = statement.type.name
    if statement.type == duckdb.StatementType.LOAD and "INSTALL" in statement.query.upper():
        return "INSTALL"
    return kind


def query_batches(
    path: Path, sql: str, limit: int | None = None, batch_rows: int = SQL_FETCH_ROWS
) -> Iterator[QueryResult]:
    """Run read-only SQL on the database file and yield the last statement's rows in batches
    (the first may be empty), so a large result never sits in memory whole; past `limit` rows
    it stops, its last batch marked `truncated`."""
    check_read_only(sql)
    conn = connect_for_reading(path)
    try:
        result = None
        for statement in duckdb.extract_statements(sql):
            result = conn.execute(statement.query)
        assert result is not None
        columns = tuple(column[0] for column in result.description or ())
        left = limit
        while True:
            wanted = batch_rows if left is None else min(batch_rows, left + 1)
            rows = result.fetchmany(wanted)
            if left is not None and len(rows) > left:
                yield QueryResult(columns, tuple(rows[:left]), truncated=True)
                return
            yield QueryResult(columns, tuple(rows))
            if len(rows) < wanted:
                return
            left = None if left is None else left - len(rows)
    except duckdb.Error as error:
        raise StoreError(f"query failed: {_one_line(error)}") from None
    finally:
        conn.close()


def query(path: Path, sql: str, limit: int | None = None) -> QueryResult:
    """Run read-only SQL on the database file; returns the last statement's result (its first
    `limit` rows when a limit is given, `truncated` saying whether more matched)."""
    columns: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = []
    truncated = False
    with closing(query_batches(path, sql, limit)) as batches:
        for batch in batches:
            columns = batch.columns
            rows.extend(batch.rows)
            truncated = truncated or batch.truncated
    return QueryResult(columns, tuple(rows), truncated)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
