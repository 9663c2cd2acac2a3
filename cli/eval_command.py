"""`rapport eval`: compare a candidate model with a baseline on held-out scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rapport._eval_report import check_report_folder, write_report_folder
from rapport._stages import run_evaluate
from rapport.cli import options as shared
from rapport.cli.exit_codes import NOTHING_DONE, OK, PARTIAL, finish
from rapport.config.constants import MAX_COUNT, MAX_SEED
from rapport.evaluation.report import user_side_failed
from rapport.evaluation.summary import EvalSummary
from rapport.stages.evaluate import EvalRequest

SPEC_HELP = (
    "simulated[:quality=Q,...], gguf:PATH, openai:MODEL[@URL], anthropic:MODEL, llamacpp, "
    "command:CLI, or a YAML file"
)


def evaluate(
    db: Annotated[Path, typer.Option("--db", help="The project's DuckDB file.")],
    scenarios: Annotated[
        int,
        typer.Option(
            "--scenarios",
            min=1,
            max=MAX_COUNT,
            help=f"Held-out scenarios to play (N, at most {MAX_COUNT:,}).",
        ),
    ],
    baseline: Annotated[str, typer.Option("--baseline", help=f"Baseline: {SPEC_HELP}.")],
    candidate: Annotated[str, typer.Option("--candidate", help=f"Candidate: {SPEC_HELP}.")],
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", min=0, max=MAX_SEED, help="Seed of the held-out scenarios (default 0)."
        ),
    ] = None,
    judges: Annotated[
        list[str] | None,
        typer.Option("--judges", "--judge", help="A judge's backend spec (repeat for several)."),
    ] = None,
    user_backend: Annotated[
        str | None,
        typer.Option("--user-backend", help="The user simulator's backend (both sides)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report folder (default: eval-<id> beside the database)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run settings (RUN.yaml).")
    ] = None,
    domain: Annotated[
        Path | None,
        typer.Option("--domain", help="Domain folder (default: the corpus's own domain)."),
    ] = None,
    turns: shared.TurnsOption = None,
    max_active: shared.MaxActiveOption = None,
    max_cost: shared.EvalMaxCostOption = None,
    quiet: shared.QuietOption = False,
    overwrite: shared.ReportOverwriteOption = False,
) -> None:
    """Play the same held-out scenarios with the baseline and the candidate as the assistant
    (same user simulator, same seeds), judge both with the same judges, and report the paired
    difference with its significance. Re-running resumes; a larger N extends the same eval."""
    if out is not None:  # before playing anything: a report that cannot be written is refused now
        check_report_folder(db, out, overwrite=overwrite)
    request = EvalRequest(
        db=db,
        scenarios=scenarios,
        baseline=baseline,
        candidate=candidate,
        seed=seed,
        user_backend=user_backend,
        judges=tuple(judges or ()),
        config=config,
        domain=domain,
        turns=turns,
        max_active=max_active,
        max_cost=max_cost,
    )
    summary = run_evaluate(request, progress=not quiet)
    files = write_report_folder(db, summary, out, overwrite=overwrite)
    print_summary(summary, Console(soft_wrap=True))
    Console(soft_wrap=True).print(f"report: {files[0]} (summary.json and plots beside it)")
    finish(*eval_outcome(summary))


def eval_outcome(summary: EvalSummary) -> tuple[int, str]:
    """The exit code and the failures line: nothing to compare when a side has no judged
    conversation at all."""
    short = [side for side in summary.sides if side.judged < side.planned]
    if not short:
        return OK, ""
    code = NOTHING_DONE if any(side.judged == 0 for side in short) else PARTIAL
    parts = [
        f"{side.side}: {side.planned - side.judged:,} of {side.planned:,} conversations "
        f"not judged ({side.failed:,} failed)"
        for side in short
    ]
    return code, "; ".join(parts) + ": run the same command again to retry them"


def print_summary(summary: EvalSummary, out: Console) -> None:
    paired = summary.paired
    for side in summary.sides:
        ci = side.mean_score_ci
        interval = f" [{ci.low:.3f}, {ci.high:.3f}]" if ci else ""
        mean = "—" if side.mean_score is None else f"{side.mean_score:.3f}"
        rate = "—" if side.pass_rate is None else f"{side.pass_rate:.1%}"
        user = "" if side.user_judged is None else f" · user side failed {user_side_failed(side)}"
        out.print(
            f"{side.side:9} {side.backend}: mean score {mean}{interval} · pass rate {rate} · "
            f"{side.safety_failures} safety-gate failures · {side.judged}/{side.planned} judged"
            f"{user}"
        )
    wilcoxon = "—" if paired.wilcoxon_p is None else f"{paired.wilcoxon_p:.3g}"
    ttest = "—" if paired.t_p is None else f"{paired.t_p:.3g}"
    dz = "—" if paired.cohens_dz is None else f"{paired.cohens_dz:.2f}"
    difference = "—" if paired.n == 0 else f"{paired.mean_difference:+.3f}"
    out.print(
        f"difference (candidate − baseline) over N = {paired.n}: {difference} · "
        f"Wilcoxon p = {wilcoxon} · paired t p = {ttest} · d_z = {dz}"
    )
    for warning in summary.warnings:
        out.print(f"warning: {warning}")
