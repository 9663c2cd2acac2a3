"""Printing query results as a rich table, CSV or JSON (the last two streamed batch by batch)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from typing import Any, Literal, Protocol

import msgspec
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from rapport.config.secrets import PATTERNS_ONLY, Redactor

OutputFormat = Literal["table", "csv", "json"]
UNBOUNDED_WIDTH = 10_000  # columns offered to a table written to a pipe: its natural width


class Tabular(Protocol):
    """What is printed: a query's result as the API returns it (columns, rows and whether a
    limit cut rows off), or rows the command line puts together itself (Rows)."""

    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def rows(self) -> tuple[tuple[Any, ...], ...]: ...
    @property
    def truncated(self) -> bool: ...


class Rows(msgspec.Struct, frozen=True):
    """Rows to print that no query returned (an estimate's table, a redacted batch)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool = False


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


def as_table(
    result: Tabular, title: str | None = None, redactor: Redactor = PATTERNS_ONLY
) -> Table:
    """Text wraps (folds) rather than being cut with an ellipsis when the terminal, or a pipe's
    80 columns, is too narrow; figures are never split: a number column is as wide as its
    widest figure. Every cell is redacted (a database written before redaction existed may
    still hold an echoed key)."""
    table = Table(title=title, title_justify="left", title_style="bold")
    cells = [[redactor(_cell(value)) for value in row] for row in result.rows]
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


def redacted(result: Tabular, redactor: Redactor) -> Rows:
    """The result with every text cell redacted."""
    rows = tuple(
        tuple(redactor(value) if isinstance(value, str) else value for value in row)
        for row in result.rows
    )
    return Rows(tuple(result.columns), rows, result.truncated)


def write_batches(
    batches: Iterable[Tabular],
    output: Literal["csv", "json"],
    redactor: Redactor = PATTERNS_ONLY,
) -> bool:
    """Write rows as they arrive, as CSV or as one JSON array, so a result of any size streams
    through, every text cell redacted; returns whether a limit cut rows off."""
    clean = (redacted(batch, redactor) for batch in batches)
    return _write_csv(clean) if output == "csv" else _write_json(clean)


def _write_csv(batches: Iterable[Tabular]) -> bool:
    writer = csv.writer(sys.stdout)
    truncated = False
    for index, batch in enumerate(batches):
        if index == 0:
            writer.writerow(batch.columns)
        writer.writerows(batch.rows)
        truncated = truncated or batch.truncated
    return truncated


def _write_json(batches: Iterable[Tabular]) -> bool:
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
