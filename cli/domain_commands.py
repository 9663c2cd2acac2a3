"""`rapport domain new | check | draft`: design a domain folder, check it, or have a model
draft it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from rapport.authoring.domain_draft import DEFAULT_DRAFT_ATTEMPTS, DraftRequest, draft_domain
from rapport.authoring.domain_preview import render_scenario, sample_preview
from rapport.config.domain_check import DomainCheck, check_domain
from rapport.config.domain_summary import describe, summarize
from rapport.config.scaffold import resolve_source, scaffold_domain

INPUT_ERROR_EXIT = 2
DEFAULT_SAMPLES = 3

domain_app = typer.Typer(
    help="Adapt Rapport to your domain: scaffold a domain folder, check it, draft it.",
    no_args_is_help=True,
)

DirArgument = Annotated[Path, typer.Argument(help="The domain folder.")]


@domain_app.command("new")
def new(
    directory: DirArgument,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Copy a shipped domain (therapy, customer_support) or a domain folder "
            "instead of the commented template.",
        ),
    ] = None,
) -> None:
    """Scaffold a domain folder whose files explain every field; refuses a non-empty folder."""
    origin = resolve_source(source)
    scaffold_domain(directory, origin)
    out = _console()
    out.print(f"created {directory} from {source or 'the commented template'}")
    _print_outcome(out, check_domain(directory), samples=0, seed=0, next_step=True)


@domain_app.command("check")
def check(
    directory: DirArgument,
    samples: Annotated[
        int, typer.Option("--samples", min=0, help="Sampled scenarios to show.")
    ] = DEFAULT_SAMPLES,
    seed: Annotated[int, typer.Option("--seed", help="Plan seed of the samples.")] = 0,
) -> None:
    """Report every problem at once, or a summary and a few sampled scenarios.

    Each problem is one line naming file and key; any problem exits with status 2.
    """
    _print_outcome(_console(), check_domain(directory), samples, seed)


@domain_app.command("draft")
def draft(
    directory: DirArgument,
    describe_text: Annotated[
        str, typer.Option("--describe", help="What conversations in this domain are about.")
    ],
    backend: Annotated[
        str, typer.Option("--backend", help="Backend spec of the model that drafts.")
    ],
    attempts: Annotated[
        int, typer.Option("--attempts", min=1, help="Replies to try before giving up.")
    ] = DEFAULT_DRAFT_ATTEMPTS,
) -> None:
    """Have a model draft the topics, flaws and rubric of a new domain.

    Each reply is written over the commented template and checked; an invalid one is retried
    with its problems fed back, up to --attempts replies.
    """
    result = draft_domain(DraftRequest(directory, describe_text, backend, attempts))
    out = _console()
    tries = f"{result.attempts} attempt{'s' * (result.attempts != 1)}"
    out.print(f"drafted {result.target} with {result.backend} in {tries}")
    if result.simulated:
        out.print("simulated: an offline draft built from the description's words, not a model")
    _print_outcome(out, check_domain(directory), samples=0, seed=0, next_step=True)


def _print_outcome(
    out: Console, result: DomainCheck, samples: int, seed: int, *, next_step: bool = False
) -> None:
    """Problems on stderr and exit 2, or the summary and samples on stdout."""
    if result.domain is None:
        errors = _console(stderr=True)
        for problem in result.problems:
            errors.print(f"[bold red]error:[/] {escape(_one_line(str(problem)))}")
        raise typer.Exit(INPUT_ERROR_EXIT)
    domain = result.domain
    out.print(f"{result.directory}: domain {domain.name!r} passes check")
    for line in describe(summarize(domain)):
        out.print(f"  {line}")
    scenarios = sample_preview(domain, samples, seed)
    if scenarios:
        out.print(f"sampled scenarios (seed {seed}):")
    for scenario in scenarios:
        for line in render_scenario(domain, scenario):
            out.print(f"  {line}")
    if next_step:
        out.print(f"next: edit the files, then `rapport domain check {result.directory}`")


def _console(*, stderr: bool = False) -> Console:
    """Plain output: paths, labels and YAML text are never read as markup or emoji codes (the
    error console's markup is only for its red `error:`, and the text after it is escaped)."""
    return Console(stderr=stderr, soft_wrap=True, highlight=False, emoji=False, markup=stderr)


def _one_line(text: str) -> str:
    return " ".join(text.split())
