"""`rapport iterate`: one turn of the design loop — a small batch generated and judged, what to
fix, and how the figures moved since the previous iteration of the same domain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console

from rapport.agents.generation import GenerateRequest
from rapport.agents.generation import generate as run_generation
from rapport.cli.exit_codes import finish, outcome
from rapport.config.constants import MAX_ACTIVE, MAX_COUNT, MAX_SEED, MAX_TURNS
from rapport.config.loader import load_domain
from rapport.judges.run import JudgeRequest, judge_corpus
from rapport.reports.iteration_figures import IterationFigures, iteration_figures, render_iteration
from rapport.store.database import Database
from rapport.store.iterations import latest_iterations, record_iteration
from rapport.store.rows import utc_now

ITERATIONS_DB = "iterations.duckdb"


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
    config: Annotated[
        Path | None, typer.Option("--config", help="Run settings (RUN.yaml), judges included.")
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option("--db", help=f"Where iterations are kept (default: DIR/{ITERATIONS_DB})."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            max=MAX_SEED,
            help="Plan seed (keep it to compare like with like).",
        ),
    ] = None,
    turns: Annotated[
        int | None,
        typer.Option("--turns", min=1, max=MAX_TURNS, help="Fix every conversation's length."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="Both roles' backend spec.")
    ] = None,
    user_backend: Annotated[
        str | None, typer.Option("--user-backend", help="The user simulator's backend spec.")
    ] = None,
    assistant_backend: Annotated[
        str | None, typer.Option("--assistant-backend", help="The assistant's backend spec.")
    ] = None,
    judges: Annotated[
        list[str] | None,
        typer.Option("--judge", "--judges", help="A judge's backend spec (repeat for several)."),
    ] = None,
    max_active: Annotated[
        int | None,
        typer.Option("--max-active", min=1, max=MAX_ACTIVE, help="Conversations alive at once."),
    ] = None,
) -> None:
    """Generate a small batch from the domain, judge it, and print what to fix: pass rate, the
    criteria failing most with the judges' words, the flaws and topics failing most, over-used
    phrases, each with its change since the previous iteration (kept in DuckDB)."""
    loaded = load_domain(domain)  # a broken domain stops here, before anything is written
    path = db if db is not None else domain / ITERATIONS_DB
    out = Console(soft_wrap=True)
    generated = run_generation(
        GenerateRequest(
            db=path,
            count=count,
            seed=seed,
            domain=domain,
            config=config,
            max_active=max_active,
            turns=turns,
            backend=backend,
            user_backend=user_backend,
            assistant_backend=assistant_backend,
        )
    )
    out.print(
        f"generated: {generated.complete}/{generated.count} complete in "
        f"{generated.elapsed_s:.1f}s ({generated.assistant_backend})"
    )
    judged = judge_corpus(
        JudgeRequest(db=path, config=config, judges=tuple(judges or ()), max_active=max_active)
    )
    out.print(f"judged: {judged.judged} new · judges: {', '.join(judged.judges)}")

    def figures_and_previous(conn) -> tuple[int, IterationFigures, IterationFigures | None]:
        figures = iteration_figures(conn, generated.plan_id)
        number = record_iteration(
            conn,
            loaded.name,
            generated.plan_id,
            loaded.fingerprint(),
            count,
            msgspec.json.encode(figures).decode(),
            utc_now(),
        )
        earlier = [r for r in latest_iterations(conn, loaded.name, 2) if r.iteration < number]
        previous = (
            msgspec.json.decode(earlier[0].figures, type=IterationFigures) if earlier else None
        )
        return number, figures, previous

    number, figures, previous = Database(path).run_sync(figures_and_previous)
    out.print("")
    for line in render_iteration(loaded.name, number, figures, previous):
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
