"""`rapport dataset build`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rapport.config.errors import RapportError
from rapport.training.dataset_build import DatasetRequest, build_dataset
from rapport.training.slicing import SlicingPolicy
from rapport.training.splits import SplitFractions

dataset_app = typer.Typer(help="Training examples from the passing conversations.")


@dataset_app.command("build")
def build(
    db: Annotated[Path, typer.Option("--db", help="The project's DuckDB file.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (dataset and README.md).")],
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="The base model's tokenizer (a local folder)."),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=16)] = 16_384,
    output_format: Annotated[str, typer.Option("--format", help="hf, parquet or jsonl.")] = "hf",
    min_score: Annotated[float | None, typer.Option("--min-score", min=0.0, max=1.0)] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    validation: Annotated[float, typer.Option("--validation", min=0.0, max=0.5)] = 0.05,
    test: Annotated[float, typer.Option("--test", min=0.0, max=0.5)] = 0.05,
    slice_every: Annotated[
        int | None,
        typer.Option("--slice-every", min=1, help="End examples every k-th exchange (+ last)."),
    ] = None,
    min_exchanges: Annotated[int, typer.Option("--min-exchanges", min=1)] = 1,
    drop_repetitive: Annotated[
        float | None,
        typer.Option(
            "--drop-repetitive",
            min=0.0,
            max=1.0,
            help="Drop conversations where more than this share of assistant turns use "
            "over-used phrases.",
        ),
    ] = None,
    dedup: Annotated[
        float | None,
        typer.Option(
            "--dedup",
            help="Keep one conversation per near-duplicate cluster at this estimated Jaccard "
            "similarity (0 < t ≤ 1, e.g. 0.8), on either side: the highest score, then the "
            "lowest id; the others are recorded in dataset_exclusions.",
        ),
    ] = None,
    keep_truncated: Annotated[
        bool,
        typer.Option(
            "--keep-truncated",
            help="Keep examples with an assistant reply cut by its token budget.",
        ),
    ] = False,
    push_to_hub: Annotated[
        str | None, typer.Option("--push-to-hub", help="Hub dataset repo (needs HF_TOKEN).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace --out even when it holds other files (a previous build of the same "
            "format is replaced without it).",
        ),
    ] = False,
    license: Annotated[
        str, typer.Option("--license", help="The dataset card's license (a Hub license id).")
    ] = "unknown",
    human_overrides: Annotated[
        bool,
        typer.Option(
            "--human-overrides",
            help="A person's pass/fail from `rapport view` decides over the judges' "
            "(more reviewers passing than failing: passed).",
        ),
    ] = False,
    reviewed_only: Annotated[
        bool,
        typer.Option("--reviewed-only", help="Only conversations a person reviewed."),
    ] = False,
    keep_simulator_failures: Annotated[
        bool,
        typer.Option(
            "--keep-simulator-failures",
            help="Keep conversations whose user side failed (its simulator rubric, or a "
            "model-free check of its turns); by default they are dropped.",
        ),
    ] = False,
) -> None:
    """Slice passing conversations into examples and write them with a dataset card."""
    if output_format not in ("hf", "parquet", "jsonl"):
        raise RapportError(f"--format must be hf, parquet or jsonl, not {output_format!r}")
    slicing = SlicingPolicy(kind="every", every=slice_every) if slice_every else SlicingPolicy()
    request = DatasetRequest(
        db=db, out=out, tokenizer=tokenizer, max_tokens=max_tokens,
        output_format=output_format,  # type: ignore[arg-type]
        min_score=min_score, seed=seed, fractions=SplitFractions(validation, test),
        slicing=slicing, min_exchanges=min_exchanges, drop_repetitive=drop_repetitive,
        push_to_hub=push_to_hub, overwrite=overwrite, license=license,
        keep_truncated=keep_truncated, human_overrides=human_overrides,
        reviewed_only=reviewed_only, keep_simulator_failures=keep_simulator_failures,
        dedup=dedup,
    )  # fmt: skip
    summary = build_dataset(request)
    console = Console(soft_wrap=True)
    counts = " · ".join(f"{split} {n:,}" for split, n in summary.examples.items())
    console.print(
        f"{summary.conversations:,} conversations → {counts} examples "
        f"({summary.truncated:,} truncated from the oldest turns, {summary.skipped_too_long:,} "
        f"too long, {summary.dropped_repetitive:,} conversations dropped as repetitive, "
        f"{summary.dropped_duplicates:,} as near-duplicates, "
        f"{summary.cut_replies:,} with a reply cut by its token budget "
        f"{'kept' if keep_truncated else 'left out'})"
    )
    user_dropped = summary.dropped_simulator_failed + summary.dropped_simulator_check
    if user_dropped or summary.kept_simulator_failures:
        console.print(
            f"user side failed: {summary.dropped_simulator_failed:,} by its rubric, "
            f"{summary.dropped_simulator_check:,} by a model-free check"
            if user_dropped
            else f"user side failed: {summary.kept_simulator_failures:,} conversations, kept "
            "(--keep-simulator-failures)"
        )
    console.print(
        f"tokens per example: mean {summary.tokens_mean:,.0f}, max {summary.tokens_max:,} "
        f"({summary.tokenizer}) · written to {summary.out}"
    )
