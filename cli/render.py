"""Printing query results as a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import sys
from typing import Any, Literal

import msgspec
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from store.query import QueryResult

OutputFormat = Literal["table", "csv", "json"]
UNBOUNDED_WIDTH = 10_000  # columns offered to a table written to a pipe: its natural width


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
    """Text wraps (folds) rather than being cut with an ellipsis when the terminal, or a pipe's
    80 columns, is too narrow; figures are never split: a number column is as wide as its
    widest figure."""
    table = Table(title=title, title_justify="left", title_style="bold")
    cells = [[_cell(value) for value in row] for row in result.rows]
    for index, column in enumerate(result.columns):
        figures = [
            len(row_cells[index])
            for row, row_cells in zip(result.rows, cells, strict=True)
            if isinstance(row[index], int | float)
        ]
        table.add_column(column, overflow="fold", min_width=max(figures, default=None))
    for row_cells in cells:
        table.add_row(*row_cells)
    return table


def print_table(table: Table, console: Console) -> None:
    """A terminal gets the table fitted to its width (text folded, figures whole); a pipe or a
    file, which has no width, gets it at its natural width, so nothing is cut or folded."""
    if console.is_terminal:
        console.print(table)
        return
    unbounded = console.options.update_width(UNBOUNDED_WIDTH)
    natural = Measurement.get(console, unbounded, table).maximum
    wide = Console(file=console.file, width=max(natural, console.width), color_system=None)
    wide.print(table)


def print_result(result: QueryResult, output: OutputFormat, console: Console) -> None:
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    elif output == "json":
        records = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        sys.stdout.write(msgspec.json.encode(records, enc_hook=str).decode() + "\n")
    else:
        print_table(as_table(result), console)
