"""`rapport merge`: the DuckDB files of a plan's shards (`generate --shard K/N`) into one corpus."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rapport._reads import merge as merge_files
from rapport.config.errors import RapportError

_GLOB_CHARACTERS = frozenset("*?[")


def merge(
    shards: Annotated[
        list[str],
        typer.Argument(
            help="The shards' DuckDB files, or a quoted glob ('shards/*.duckdb').",
            metavar="SHARD",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="The corpus to merge into (created, or one of the same plan)."),
    ],
) -> None:
    """Merge shard files of one plan into one corpus; merging again after a shard was resumed
    or extended adds only what is new. Shards of another plan, domain or seed are refused."""
    summary = merge_files(out, shard_files(shards))
    console = Console(soft_wrap=True, highlight=False)
    for shard in summary.shards:
        console.print(
            f"{shard.path}: {shard.conversations_added:,} conversations added, "
            f"{shard.conversations_advanced:,} advanced, {shard.messages:,} messages, "
            f"{shard.runs_added:,} runs"
        )
    statuses = " · ".join(f"{n:,} {status}" for status, n in summary.statuses.items())
    console.print(f"{summary.out}: plan {summary.plan_id} · {statuses or 'no conversations'}")
    if summary.missing:
        console.print(f"not merged yet: shard {', '.join(summary.missing)}")


def shard_files(arguments: list[str]) -> list[Path]:
    """Paths and globs (quoted, so the shell left them) as files, each once, in the given order
    (a glob's matches sorted)."""
    files: list[Path] = []
    for argument in arguments:
        if _GLOB_CHARACTERS & set(argument):
            matches = sorted(glob.glob(argument))
            if not matches:
                raise RapportError(f"{argument}: no file matches")
            files.extend(Path(match) for match in matches)
        else:
            files.append(Path(argument))
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())
