"""`rapport stats --duplicates`: compute (or refresh) the near-duplicate clusters, then print
each side's share of the corpus in clusters and its largest clusters."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from rapport._reads import DedupSummary, duplicates
from rapport.cli.render import as_table, print_table
from rapport.config.secrets import Redactor


def summary_table(summary: DedupSummary) -> Table:
    s = summary.settings
    table = Table(
        title=f"Near-duplicates (estimated Jaccard ≥ {s.threshold:g}, word {s.shingle_size}-"
        f"shingles, {s.num_perm} permutations)",
        title_justify="left",
        title_style="bold",
    )
    for column in ("side", "conversations", "clusters", "in clusters", "share in clusters",
                   "left out by --dedup"):  # fmt: skip
        table.add_column(column, justify="left" if column == "side" else "right")
    for side in summary.sides:
        share = side.in_clusters / side.conversations if side.conversations else 0.0
        table.add_row(
            side.side,
            f"{side.conversations:,}",
            f"{side.clusters:,}",
            f"{side.in_clusters:,}",
            f"{share:.2%}",
            f"{side.duplicates:,}",
        )
    return table


def print_duplicates(db: Path, threshold: float, console: Console, redactor: Redactor) -> None:
    status = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        if status.is_terminal:
            status.print(f"[dim]{line}[/]")

    summary, sections = duplicates(db, threshold, say)
    print_table(summary_table(summary), console)
    for section in sections:
        if section.result.rows:
            print_table(as_table(section.result, title=section.title, redactor=redactor), console)
    console.print(
        f"{summary.hashed:,} conversations hashed by this pass (the others' signatures were "
        f"stored) in {summary.elapsed_s:,.1f}s; every cluster: rapport sql --db {db} "
        "'SELECT * FROM duplicate_clusters'",
        highlight=False,
        soft_wrap=True,
    )
