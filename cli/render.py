"""Printing query results as a rich table, CSV or JSON (the last two streamed batch by batch)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
from rich.table import Table

from config.secrets import PATTERNS_ONLY, Redactor
from store.query import QueryResult

OutputFormat = Literal["table", "csv", "json"]


def _cell(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def as_table(
    result: QueryResult, title: str | None = None, redactor: Redactor = PATTERNS_ONLY
) -> Table:
    """A rich table of the result, every cell redacted (a database written before redaction
    existed may still hold an echoed key)."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*(redactor(_cell(value)) for value in row))
    return table


def redacted(result: QueryResult, redactor: Redactor) -> QueryResult:
    """The result with every text cell redacted."""
    rows = tuple(
        tuple(redactor(value) if isinstance(value, str) else value for value in row)
        for row in result.rows
    )
    return msgspec.structs.replace(result, rows=rows)


def write_batches(
    batches: Iterable[QueryResult],
    output: Literal["csv", "json"],
    redactor: Redactor = PATTERNS_ONLY,
) -> bool:
    """Write rows as they arrive, as CSV or as one JSON array, so a result of any size streams
    through, every text cell redacted; returns whether a limit cut rows off."""
    clean = (redacted(batch, redactor) for batch in batches)
    return _write_csv(clean) if output == "csv" else _write_json(clean)


def _write_csv(batches: Iterable[QueryResult]) -> bool:
    writer = csv.writer(sys.stdout)
    truncated = False
    for index, batch in enumerate(batches):
        if index == 0:
            writer.writerow(batch.columns)
        writer.writerows(batch.rows)
        truncated = truncated or batch.truncated
    return truncated


def _write_json(batches: Iterable[QueryResult]) -> bool:
    written = 0
    truncated = False
    for index, batch in enumerate(batches):
        if index == 0:
            sys.stdout.write("[")  # only once the query has run: a failed one writes nothing
        for row in batch.rows:
            record = dict(zip(batch.columns, row, strict=True))
            sys.stdout.write(("," if written else "") + _json(record))
            written += 1
        truncated = truncated or batch.truncated
    sys.stdout.write("]\n")
    return truncated


def _json(value: Any) -> str:
    return msgspec.json.encode(value, enc_hook=str).decode()
