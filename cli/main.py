"""Entry point: `rapport generate | sql | stats`. Input errors print one line and exit non-zero."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.console import Console

from agents.generation import GenerateRequest, Generation
from agents.generation import generate as run_generation
from cli.bench_commands import bench_app
from cli.dataset_commands import dataset_app
from cli.domain_commands import domain_app
from cli.eval_command import evaluate
from cli.iterate_command import iterate
from cli.progress_display import live_display
from cli.render import OutputFormat, as_table, print_result, print_table
from cli.training_commands import chat as chat_command
from cli.training_commands import export as export_command
from cli.training_commands import model_app
from cli.training_commands import serve as serve_command
from cli.training_commands import train as train_command
from config.errors import RapportError
from config.prices import load_prices
from judges.judge import Judge
from judges.repetition import describe, repetition_report
from judges.report import write_report
from judges.run import (
    JudgeRequest,
    build_judges,
    close_judges,
    judge_as_completed,
    judge_corpus,
)
from store.query import query
from store.stats import complete_transcripts, corpus_stats

INPUT_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130

app = typer.Typer(
    name="rapport",
    help="Simulate, judge and train: domain description in, fine-tuned local chat model out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(bench_app, name="bench")
app.add_typer(dataset_app, name="dataset")
app.add_typer(domain_app, name="domain")
app.add_typer(model_app, name="model")
app.command("train")(train_command)
app.command("export")(export_command)
app.command("serve")(serve_command)
app.command("chat")(chat_command)
app.command("eval")(evaluate)
app.command("iterate")(iterate)

DbOption = Annotated[Path, typer.Option("--db", help="The project's DuckDB file.")]


@app.command()
def generate(
    db: DbOption,
    count: Annotated[int, typer.Option("--count", min=1, help="Conversations in the plan.")],
    seed: Annotated[int | None, typer.Option("--seed", help="Plan seed (default 0).")] = None,
    domain: Annotated[
        Path | None, typer.Option("--domain", help="Domain folder (default: shipped therapy).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run settings (RUN.yaml).")
    ] = None,
    max_active: Annotated[
        int | None, typer.Option("--max-active", min=1, help="Conversations alive at once.")
    ] = None,
    turns: Annotated[
        int | None,
        typer.Option("--turns", min=1, help="Fix every conversation's length (exchanges)."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Both roles' backend: simulated, llamacpp, gguf:PATH, openai:MODEL[@URL], "
            "anthropic:MODEL, command:CLI, or a YAML file.",
        ),
    ] = None,
    user_backend: Annotated[
        str | None, typer.Option("--user-backend", help="The user simulator's backend spec.")
    ] = None,
    assistant_backend: Annotated[
        str | None, typer.Option("--assistant-backend", help="The assistant's backend spec.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No live progress display.")] = False,
) -> None:
    """Plan (if this database has no plan for these settings) and simulate; re-running resumes."""
    console = Console(stderr=True)
    request = GenerateRequest(
        db=db,
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

    def display(generation: Generation):
        if quiet or not console.is_terminal:
            return None
        return live_display(console, generation.gateways, load_prices(generation.settings.prices))

    judges: list[Judge] = []

    def judging(generation: Generation):
        if not generation.settings.judges:
            return None
        judges.extend(
            build_judges(
                generation.settings.judges, generation.domain, dict(os.environ), str(config)
            )
        )
        return judge_as_completed(judges, generation.domain)

    try:
        summary = run_generation(request, display=display, after_complete=judging)
    finally:
        anyio.run(close_judges, judges)
    out = Console(soft_wrap=True)
    out.print(
        f"run {summary.run_id} · plan {summary.plan_id} · {summary.complete:,}/{summary.count:,} "
        f"complete · {summary.failed:,} failed · {summary.pending:,} pending · "
        f"{summary.turns_written:,} turns in {summary.elapsed_s:,.1f}s"
    )
    out.print(f"user simulator: {summary.user_backend} · assistant: {summary.assistant_backend}")
    if summary.failed:
        out.print("failed conversations are retried when the same command runs again")
    if judges:  # conversations completed earlier, or killed before their judging
        judged = judge_corpus(JudgeRequest(db=db, config=config, max_active=max_active))
        out.print(
            f"judged as they completed; {judged.assessed:,} assessments stored "
            f"({judged.failed_criteria:,} criteria failed)"
        )


@app.command()
def judge(
    db: DbOption,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run settings with `judges:` (RUN.yaml).")
    ] = None,
    judge_specs: Annotated[
        list[str] | None,
        typer.Option("--judge", help="A judge's backend spec (repeat for several judges)."),
    ] = None,
    max_active: Annotated[
        int | None, typer.Option("--max-active", min=1, help="Conversations judged at once.")
    ] = None,
) -> None:
    """Judge every complete, unjudged conversation against the domain's rubric; re-running
    is idempotent and resumes after a kill."""
    request = JudgeRequest(
        db=db, config=config, judges=tuple(judge_specs or ()), max_active=max_active
    )
    summary = judge_corpus(request)
    out = Console(soft_wrap=True)
    out.print(
        f"judged {summary.judged:,} conversation-judge pairs in {summary.elapsed_s:,.1f}s · "
        f"{summary.assessed:,} assessments stored · {summary.failed_criteria:,} criteria failed"
    )
    out.print("judges: " + ", ".join(summary.judges))
    if summary.failed_criteria:
        out.print("failed criteria are asked again when the same command runs again")


@app.command()
def sql(
    db: DbOption,
    statement: Annotated[str, typer.Argument(help="A read-only query (SELECT / EXPLAIN).")],
    output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Run a read-only SQL query over the corpus; writes are refused."""
    if output not in ("table", "csv", "json"):
        raise RapportError(f"--format must be table, csv or json, not {output!r}")
    fmt: OutputFormat = output  # type: ignore[assignment]
    print_result(query(db, statement), fmt, Console())


@app.command()
def stats(
    db: DbOption,
    repetition: Annotated[
        bool, typer.Option("--repetition", help="Over-used phrases and diversity instead.")
    ] = False,
) -> None:
    """Corpus overview: conversations by status, length and token distributions, by topic,
    flaw and backend, and the judging figures once conversations are judged."""
    console = Console()
    if repetition:
        for title, result in describe(repetition_report(complete_transcripts(db))):
            print_table(as_table(result, title=title), console)
        return
    for section in corpus_stats(db):
        print_table(as_table(section.result, title=section.title), console)


@app.command()
def report(
    db: DbOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md and the plots.")],
) -> None:
    """Write the corpus and judging figures as Markdown with PNG plots."""
    path = write_report(db, out)
    Console(soft_wrap=True).print(f"written: {path} (and its plots in {out})")


def run() -> None:
    """Console-script entry: one line and a non-zero exit for bad input, never a traceback."""
    try:
        try:
            app()
        except BaseExceptionGroup as group:
            raise _single_user_error(group) from None
    except RapportError as error:
        Console(stderr=True, emoji=False).print(
            f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True
        )
        sys.exit(INPUT_ERROR_EXIT)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: run the same command again to resume")
        sys.exit(INTERRUPTED_EXIT)


def _single_user_error(group: BaseExceptionGroup) -> BaseException:
    """A user error raised inside task groups arrives wrapped: unwrap it to print one line."""
    user_errors, _ = group.split(RapportError)
    if user_errors is None:
        return group
    leaf: BaseException = user_errors
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


if __name__ == "__main__":
    run()
