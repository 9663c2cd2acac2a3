"""`rapport iterate`: one turn of the design loop — a small batch generated and judged, what to
fix, and how the figures moved since the previous iteration of the same domain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rapport.cli import options as shared
from rapport.cli.exit_codes import finish, outcome
from rapport.config.constants import MAX_COUNT
from rapport.reports.iteration_figures import render_iteration
from rapport.stages.iterate import ITERATIONS_DB
from rapport.stages.iterate import iterate as run_iteration


def iterate(
    domain: Annotated[Path, typer.Option("--domain", help="The domain folder being designed.")],
    count: Annotated[
        int,
        typer.Option(
            "--count",
            min=1,
            max=MAX_COUNT,
            help=f"Conversations in the batch (at most {MAX_COUNT:,}).",
        ),
    ] = 20,
    config: shared.ConfigOption = None,
    db: Annotated[
        Path | None,
        typer.Option("--db", help=f"Where iterations are kept (default: DIR/{ITERATIONS_DB})."),
    ] = None,
    seed: shared.SeedOption = None,
    turns: shared.TurnsOption = None,
    backend: shared.BackendOption = None,
    user_backend: shared.UserBackendOption = None,
    assistant_backend: shared.AssistantBackendOption = None,
    judges: Annotated[
        list[str] | None,
        typer.Option("--judge", "--judges", help="A judge's backend spec (repeat for several)."),
    ] = None,
    max_active: shared.MaxActiveOption = None,
) -> None:
    """Generate a small batch from the domain, judge it, and print what to fix: pass rate, the
    criteria failing most with the judges' words, the flaws and topics failing most, over-used
    phrases, each with its change since the previous iteration (kept in DuckDB)."""
    path = db if db is not None else domain / ITERATIONS_DB
    request = shared.generate_request(locals(), db=path, judging="always")
    done = run_iteration(request)
    generated, judged = done.generated, done.generated.judging
    assert judged is not None
    out = Console(soft_wrap=True)
    out.print(
        f"generated: {generated.complete}/{generated.count} complete in "
        f"{generated.elapsed_s:.1f}s ({generated.assistant_backend})"
    )
    out.print(f"judged: {judged.judged} new · judges: {', '.join(judged.judges)}")
    out.print("")
    for line in render_iteration(done.domain, done.number, done.figures, done.previous):
        out.print(line, highlight=False)
    out.print(f"\nkept in {path} (table iterations); edit the domain and run again to compare")
    asked = judged.answered_criteria + judged.failed_criteria
    failures = [
        f"{generated.count - generated.complete:,} of {generated.count:,} conversations failed"
        if generated.complete < generated.count
        else "",
        f"{judged.failed_criteria:,} of {asked:,} criteria failed"
        if judged.failed_criteria
        else "",
    ]
    finish(
        outcome((generated.complete, generated.count), (judged.answered_criteria, asked)),
        "; ".join(line for line in failures if line) + ": run the same command again to retry them",
    )
