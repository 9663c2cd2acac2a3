"""Entry point: `rapport generate | sql | stats`. Input errors print one line and exit non-zero."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from rapport._reads import (
    dedup_threshold,
    repetition_sections,
    sql_batches,
    sql_rows,
    stats_sections,
    stored_redactor,
    write_corpus_report,
)
from rapport._stages import (
    configured_budget,
    draw_count,
    run_estimate,
    run_generate,
    run_judge,
    run_passing_estimate,
)
from rapport.cli import options as shared
from rapport.cli.bench_commands import bench_app
from rapport.cli.dataset_commands import dataset_app
from rapport.cli.domain_commands import domain_app
from rapport.cli.duplicates_display import print_duplicates
from rapport.cli.estimate_table import print_estimate
from rapport.cli.eval_command import evaluate
from rapport.cli.exit_codes import (
    INPUT_ERROR,
    INTERNAL_ERROR,
    OK,
    TRACEBACK_ENV,
    error_exit,
    finish,
    interrupted_exit,
    outcome,
)
from rapport.cli.iterate_command import iterate
from rapport.cli.merge_command import merge
from rapport.cli.option_suggestion import usage_message
from rapport.cli.passing_table import print_passing_estimate, stratum_table
from rapport.cli.render import as_table, print_table, write_batches
from rapport.cli.sql_input import sql_text
from rapport.cli.training_commands import chat as chat_command
from rapport.cli.training_commands import export as export_command
from rapport.cli.training_commands import model_app
from rapport.cli.training_commands import serve as serve_command
from rapport.cli.training_commands import train as train_command
from rapport.cli.view_command import review_app
from rapport.cli.view_command import view as view_command
from rapport.config.constants import (
    DEDUP_THRESHOLD,
    MAX_ACTIVE,
    MAX_COUNT,
    SQL_TABLE_ROWS,
    UNTIL_PASSING_DRAW_FACTOR,
)
from rapport.config.errors import RapportError
from rapport.config.secrets import Redactor
from rapport.config.sides import parse_sides
from rapport.engine.budget import BudgetReached
from rapport.engine.interrupts import Interrupted, raise_on_stop_signals
from rapport.errors import user_error
from rapport.stages.generate import RunSummary
from rapport.stages.judge import JudgeRequest
from rapport.stages.until_passing import short_line

INPUT_ERROR_EXIT = INPUT_ERROR

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
app.add_typer(review_app, name="review")
app.command("train")(train_command)
app.command("export")(export_command)
app.command("serve")(serve_command)
app.command("chat")(chat_command)
app.command("eval")(evaluate)
app.command("iterate")(iterate)
app.command("merge")(merge)
app.command("view")(view_command)

DbOption = Annotated[Path, typer.Option("--db", help="The project's DuckDB file.")]


@app.command()
def generate(
    db: DbOption,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            min=1,
            max=MAX_COUNT,
            help=f"Conversations in the plan (at most {MAX_COUNT:,}); with --until-passing, "
            f"the most scenarios it may draw (default {UNTIL_PASSING_DRAW_FACTOR} × N).",
        ),
    ] = None,
    seed: shared.SeedOption = None,
    domain: Annotated[
        Path | None, typer.Option("--domain", help="Domain folder (default: shipped therapy).")
    ] = None,
    config: shared.ConfigOption = None,
    max_active: shared.MaxActiveOption = None,
    turns: shared.TurnsOption = None,
    backend: shared.BackendOption = None,
    user_backend: shared.UserBackendOption = None,
    assistant_backend: shared.AssistantBackendOption = None,
    quiet: shared.QuietOption = False,
    max_cost: shared.MaxCostOption = None,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Print what the run would take (requests, tokens, cost with and without prompt "
            "caching, wall time) and exit: no model is called and nothing is written.",
        ),
    ] = False,
    shard: shared.ShardOption = None,
    ray: shared.RayOption = None,
    workers: shared.WorkersOption = 2,
    until_passing: Annotated[
        int | None,
        typer.Option(
            "--until-passing",
            help="Play and judge until N conversations pass (needs judges), in the plan's "
            "topic and flaw mix; --count is then the most scenarios it may draw.",
        ),
    ] = None,
    judge_specs: Annotated[
        list[str] | None,
        typer.Option("--judge", help="A judge's backend spec (repeat for several judges)."),
    ] = None,
) -> None:
    """Plan (if this database has no plan for these settings) and simulate; re-running resumes.
    With `judges:` in the run settings (or --judge), each conversation is judged as it
    completes. With --shard K/N, only the plan's scenarios with index % N == K (`rapport merge`
    joins shards). With --until-passing N, until N conversations pass."""
    count = draw_count(count, until_passing)
    judges = tuple(judge_specs or ())
    request = shared.generate_request(
        locals(), judging="always" if judges else "configured", judges=judges
    )
    if until_passing is not None and estimate:
        budget = configured_budget(request)
        print_passing_estimate(run_passing_estimate(request), Console(soft_wrap=True), budget)
        return
    if estimate:
        print_estimate(run_estimate(request), Console(soft_wrap=True), configured_budget(request))
        return
    if ray is not None and configured_budget(request) is not None:
        raise RapportError(
            "--max-cost / budget_usd is not supported with --ray yet (each worker would need "
            "the driver's spend guard): run it without --ray, or as shards with --shard K/N"
        )
    play = shared.cluster_player(ray, workers)
    summary = run_generate(request, progress=not quiet, play=play)
    out = Console(soft_wrap=True)
    if summary.passing is not None:
        _print_passing(summary, out, configured_budget(request))
        return
    shard = f" · shard {summary.shard}" if summary.shard else ""
    out.print(
        f"run {summary.run_id} · plan {summary.plan_id}{shard} · "
        f"{summary.complete:,}/{summary.count:,} "
        f"complete · {summary.failed:,} failed · {summary.pending:,} pending · "
        f"{summary.turns_written:,} turns in {summary.elapsed_s:,.1f}s"
    )
    out.print(f"user simulator: {summary.user_backend} · assistant: {summary.assistant_backend}")
    if summary.failed:
        out.print("failed conversations are retried when the same command runs again")
    failures = [_conversations_failed(summary.count - summary.complete, summary.count)]
    parts = [(summary.complete, summary.count)]
    judged = summary.judging
    if judged is not None:  # conversations completed by this run, and those left unjudged
        out.print(
            f"judged as they completed; {judged.assessed:,} assessments stored "
            f"({judged.failed_criteria:,} criteria failed)"
        )
        failures.append(_criteria_failed(judged.failed_criteria, judged.answered_criteria))
        parts.append((judged.answered_criteria, judged.answered_criteria + judged.failed_criteria))
    finish(outcome(*parts), "; ".join(line for line in failures if line))


def _print_passing(summary: RunSummary, out: Console, max_cost: float | None) -> None:
    """An --until-passing run's end: the target reached, or which strata fell short."""
    passing = summary.passing
    assert passing is not None
    shard = f" · shard {summary.shard}" if summary.shard else ""
    surplus = sum(s.surplus for s in passing.strata)
    out.print(
        f"run {summary.run_id} · plan {summary.plan_id}{shard} · "
        f"{summary.complete:,} complete · {summary.failed:,} failed · "
        f"{passing.judged:,} judged · {summary.turns_written:,} turns in "
        f"{summary.elapsed_s:,.1f}s",
        highlight=False,
    )
    out.print(stratum_table(passing), highlight=False)
    if passing.reached:
        yield_share = (passing.passing + surplus) / passing.judged if passing.judged else 0.0
        extra = f", {surplus:,} more passing beyond their strata's quotas" if surplus else ""
        out.print(
            f"{passing.target:,} passing conversations reached: {len(passing.strata)} strata at "
            f"their quotas, yield {yield_share:.0%} over {passing.judged:,} judged{extra}",
            highlight=False,
        )
        return
    finish(outcome((passing.passing, passing.target)), short_line(passing, max_cost))


def _conversations_failed(failed: int, total: int) -> str:
    if not failed:
        return ""
    return f"{failed:,} of {total:,} conversations failed: run the same command again to retry them"


def _criteria_failed(failed: int, answered: int) -> str:
    if not failed:
        return ""
    return (
        f"{failed:,} of {failed + answered:,} criteria failed: "
        "run the same command again to ask them again"
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
        int | None,
        typer.Option("--max-active", min=1, max=MAX_ACTIVE, help="Conversations judged at once."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No live progress display.")] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Through the providers' batch APIs (openai, anthropic judges): half price, "
            "results within hours; a killed run re-attaches to its batches.",
        ),
    ] = False,
    side: Annotated[
        str,
        typer.Option(
            "--side",
            help="assistant (rubric.yaml), user (the simulated user, simulator_rubric.yaml) "
            "or both.",
        ),
    ] = "both",
) -> None:
    """Judge every complete, unjudged conversation against the domain's rubric and, where the
    domain has a simulator_rubric.yaml, its simulated user's side; re-running is idempotent
    and resumes after a kill."""
    request = JudgeRequest(
        db=db,
        config=config,
        judges=tuple(judge_specs or ()),
        max_active=max_active,
        batch=batch,
        sides=parse_sides(side),
    )
    console = Console(stderr=True)

    def say(line: str) -> None:  # batch progress: submitted, polling, done, failed
        console.print(f"batch · {line}", highlight=False, soft_wrap=True)

    summary = run_judge(request, progress=not quiet, say=say)
    out = Console(soft_wrap=True)
    out.print(
        f"judged {summary.judged:,} conversation-judge pairs in {summary.elapsed_s:,.1f}s · "
        f"{summary.assessed:,} assessments stored · {summary.failed_criteria:,} criteria failed"
    )
    if summary.simulator_assessed:
        out.print(f"user side: {summary.simulator_assessed:,} assessments stored")
    if summary.batches is not None:
        done = summary.batches
        out.print(
            f"batches: {done.batches:,} submitted ({done.submitted:,} items), "
            f"{done.reattached:,} re-attached · {done.done:,} items answered, "
            f"{done.failed:,} failed or expired · ${done.cost_usd:,.4f} at the batch price"
        )
    out.print("judges: " + ", ".join(summary.judges))
    if summary.failed_criteria:
        out.print("failed criteria are asked again when the same command runs again")
    asked = summary.answered_criteria + summary.failed_criteria
    finish(
        outcome((summary.answered_criteria, asked)),
        _criteria_failed(summary.failed_criteria, summary.answered_criteria),
    )


@app.command()
def sql(
    db: DbOption,
    statement: Annotated[
        str | None,
        typer.Argument(
            help="A read-only query (SELECT / EXPLAIN); - reads it from stdin. "
            "Put -- before a query that starts with -."
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Read the query from this file.")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=0,
            help=f"Rows printed at most, 0 for all (default: {SQL_TABLE_ROWS:,} for a table; "
            "csv and json stream every row).",
        ),
    ] = None,
) -> None:
    """Run a read-only SQL query over the corpus; writes are refused."""
    if output not in ("table", "csv", "json"):
        raise RapportError(f"--format must be table, csv or json, not {output!r}")
    text = sql_text(statement, file)
    redactor = stored_redactor(db)
    if output == "table":
        result = sql_rows(db, text, SQL_TABLE_ROWS if limit is None else limit or None)
        print_table(as_table(result, redactor=redactor), Console())
        truncated = result.truncated
    else:
        with closing(sql_batches(db, text, limit or None)) as batches:
            truncated = write_batches(batches, output, redactor)  # type: ignore[arg-type]
    if truncated:
        Console(stderr=True).print(
            f"rows cut at --limit {limit or SQL_TABLE_ROWS:,}: more matched "
            "(--limit 0 prints them all; --format csv or json streams them)",
            highlight=False,
        )


@app.command()
def stats(
    db: DbOption,
    repetition: Annotated[
        bool, typer.Option("--repetition", help="Over-used phrases and diversity instead.")
    ] = False,
    duplicates: Annotated[
        bool,
        typer.Option(
            "--duplicates",
            help="Near-duplicate conversations instead (MinHash/LSH per side): computes or "
            "refreshes the clusters (writes duplicate_clusters; only new conversations are "
            "hashed).",
        ),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help=f"With --duplicates: the estimated Jaccard similarity (0 < t ≤ 1) from which "
            f"two conversations' sides are near-duplicates (default {DEDUP_THRESHOLD:g}).",
        ),
    ] = None,
) -> None:
    """Corpus overview: conversations by status, length and token distributions, by topic,
    flaw and backend, and the judging figures once conversations are judged."""
    console = Console()
    if threshold is not None and not duplicates:
        raise RapportError("--threshold goes with --duplicates")
    if duplicates:
        limit = dedup_threshold(threshold)
        print_duplicates(db, limit, console, stored_redactor(db))
        return
    redactor = stored_redactor(db)
    sections = repetition_sections(db) if repetition else stats_sections(db)
    for section in sections:
        print_table(as_table(section.result, title=section.title, redactor=redactor), console)


@app.command()
def report(
    db: DbOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md and the plots.")],
    overwrite: shared.ReportOverwriteOption = False,
) -> None:
    """Write the corpus and judging figures as Markdown with PNG plots."""
    path = write_corpus_report(db, out, overwrite=overwrite)
    Console(soft_wrap=True).print(f"written: {path} (and its plots in {out})")


def run() -> None:
    """Console-script entry: one line and a non-zero exit for bad input, never a traceback;
    the exit codes are those of cli.exit_codes."""
    raise_on_stop_signals()
    try:
        try:
            code = app(  # usage errors: one line each
                args=shared.optional_values(sys.argv[1:]),
                prog_name="rapport",
                standalone_mode=False,
            )
        except BaseExceptionGroup as group:
            raise _single_user_error(group) from None
    except TyperException as error:  # click's usage errors (typer vendors click)
        context = getattr(error, "ctx", None)
        where = context.command_path if context is not None else "rapport"
        _print_error(f"{where}: {usage_message(error)} (see {where} --help)")
        sys.exit(INPUT_ERROR_EXIT)
    except BudgetReached as stop:  # a clean stop, not an error: nothing is lost
        Console(stderr=True, highlight=False, soft_wrap=True).print(str(stop))
        sys.exit(error_exit(stop))
    except RapportError as error:
        _print_error(str(error))
        sys.exit(error_exit(error))
    except (Interrupted, KeyboardInterrupt, typer.Abort) as stop:
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        progress = stop.progress if isinstance(stop, Interrupted) else None
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"interrupted: {progress + ', ' if progress else ''}"
            "run the same command again to resume"
        )
        sys.exit(interrupted_exit(signum))
    except Exception as error:  # a bug of ours: still one (redacted) line, the traceback on demand
        if os.environ.get(TRACEBACK_ENV):
            raise
        _print_error(
            f"internal error: {type(error).__name__}: {error} "
            f"(nothing stored is lost; {TRACEBACK_ENV}=1 shows the traceback for a bug report)"
        )
        sys.exit(INTERNAL_ERROR)
    sys.exit(code if isinstance(code, int) else OK)


def _print_error(message: str) -> None:
    redacted = Redactor.from_environ(os.environ)(message)  # a provider may echo a key
    Console(stderr=True, emoji=False).print(
        f"[bold red]error:[/] {escape(redacted)}", highlight=False, soft_wrap=True
    )


def _single_user_error(group: BaseExceptionGroup) -> BaseException:
    """A user error (or a stop) raised inside task groups arrives wrapped: unwrap it as the API
    does (rapport.errors.user_error) to print one line."""
    found = user_error(group)
    return group if found is None else found


if __name__ == "__main__":
    run()
