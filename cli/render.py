"""Printing query results as a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import sys
from typing import Any, Literal

import msgspec
from rich.console import Console
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


def print_result(
    result: QueryResult, output: OutputFormat, console: Console, redactor: Redactor = PATTERNS_ONLY
) -> None:
    result = redacted(result, redactor)
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    elif output == "json":
        records = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        sys.stdout.write(msgspec.json.encode(records, enc_hook=str).decode() + "\n")
    else:
        console.print(as_table(result))
