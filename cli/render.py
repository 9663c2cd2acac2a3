"""Printing query results as a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import sys
from typing import Any, Literal

import msgspec
from rich.console import Console
from rich.table import Table

from store.query import QueryResult

OutputFormat = Literal["table", "csv", "json"]


def _cell(value: Any) -> str:
    """Figures a person reads: no scientific notation, thousands separated."""
    if value is None:
        return "∅"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() or abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.2e}"
    return str(value)


def as_table(result: QueryResult, title: str | None = None) -> Table:
    """Cells wrap (fold) rather than being cut with an ellipsis when the terminal, or a pipe's
    80 columns, is too narrow: every figure stays readable."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in result.columns:
        table.add_column(column, overflow="fold")
    for row in result.rows:
        table.add_row(*(_cell(value) for value in row))
    return table


def print_result(result: QueryResult, output: OutputFormat, console: Console) -> None:
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    elif output == "json":
        records = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        sys.stdout.write(msgspec.json.encode(records, enc_hook=str).decode() + "\n")
    else:
        console.print(as_table(result))
