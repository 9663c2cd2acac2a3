"""`rapport bench provider | throughput | cost | scale | dedup | slots`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rapport.bench.cost import CostSettings, run_cost
from rapport.bench.cost import summary_rows as cost_rows
from rapport.bench.throughput import (
    SMOKE_SETTINGS,
    BenchSettings,
    run_throughput,
    run_unknown_limits,
    summary_rows,
    unknown_limit_rows,
)
from rapport.config.constants import DEDUP_THRESHOLD, MAX_PORT
from rapport.config.errors import RapportError
from rapport.fakes.provider import FakeProviderSettings, serve_forever

bench_app = typer.Typer(help="Benchmarks and the local fake provider they run against.")

RESULTS = Path("bench/results")


@bench_app.command("provider")
def provider(
    port: Annotated[int, typer.Option("--port", min=1, max=MAX_PORT)] = 8089,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    rpm: Annotated[int | None, typer.Option("--rpm", min=1)] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", min=1)] = None,
    burst_s: Annotated[float, typer.Option("--burst-s", min=0.01)] = 1.0,
    latency_ms: Annotated[float, typer.Option("--latency-ms", min=0.0)] = 0.0,
    latency_sigma: Annotated[float, typer.Option("--latency-sigma", min=0.0)] = 0.25,
    reply_tokens: Annotated[int, typer.Option("--reply-tokens", min=1)] = 60,
    fault_429: Annotated[float, typer.Option("--fault-429", min=0.0, max=1.0)] = 0.0,
    fault_500: Annotated[float, typer.Option("--fault-500", min=0.0, max=1.0)] = 0.0,
    fault_hang: Annotated[float, typer.Option("--fault-hang", min=0.0, max=1.0)] = 0.0,
    fault_malformed: Annotated[float, typer.Option("--fault-malformed", min=0.0, max=1.0)] = 0.0,
    fault_drop: Annotated[float, typer.Option("--fault-drop", min=0.0, max=1.0)] = 0.0,
    hang_s: Annotated[float, typer.Option("--hang-s", min=0.0)] = 30.0,
    retry_after_ms: Annotated[int, typer.Option("--retry-after-ms", min=0)] = 50,
    rate_limit_first: Annotated[int, typer.Option("--rate-limit-first", min=0)] = 0,
    server_error_first: Annotated[int, typer.Option("--server-error-first", min=0)] = 0,
    malformed_first: Annotated[int, typer.Option("--malformed-first", min=0)] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    limit_headers: Annotated[
        str, typer.Option("--limit-headers", help="always | on_429 | never")
    ] = "always",
    slots: Annotated[int | None, typer.Option("--slots", min=1)] = None,
    prompt_cache: Annotated[
        bool,
        typer.Option(
            "--prompt-cache/--no-prompt-cache",
            help="Emulate each API's prompt caching in its usage fields.",
        ),
    ] = True,
    cache_ttl_s: Annotated[float, typer.Option("--cache-ttl-s", min=0.0)] = 300.0,
    batch_delay_s: Annotated[float, typer.Option("--batch-delay-s", min=0.0)] = 0.2,
    batch_fail_rate: Annotated[float, typer.Option("--batch-fail-rate", min=0.0, max=1.0)] = 0.0,
    batch_expire_rate: Annotated[
        float, typer.Option("--batch-expire-rate", min=0.0, max=1.0)
    ] = 0.0,
    batch_fail_first: Annotated[int, typer.Option("--batch-fail-first", min=0)] = 0,
    batch_expire_first: Annotated[int, typer.Option("--batch-expire-first", min=0)] = 0,
) -> None:
    """Serve an OpenAI-compatible (and Anthropic messages) API on loopback with real rate
    limits, lognormal latency, injected faults, prompt caching and both batch APIs, until
    interrupted."""
    settings = FakeProviderSettings(
        rpm=rpm, tpm=tpm, burst_s=burst_s, latency_ms=latency_ms, latency_sigma=latency_sigma,
        reply_tokens=reply_tokens, fault_429=fault_429, fault_500=fault_500,
        fault_hang=fault_hang, fault_malformed=fault_malformed, fault_drop=fault_drop,
        hang_s=hang_s, retry_after_ms=retry_after_ms, rate_limit_first=rate_limit_first,
        server_error_first=server_error_first, malformed_first=malformed_first, seed=seed,
        limit_headers=limit_headers, slots=slots, prompt_cache=prompt_cache,
        cache_ttl_s=cache_ttl_s, batch_delay_s=batch_delay_s, batch_fail_rate=batch_fail_rate,
        batch_expire_rate=batch_expire_rate, batch_fail_first=batch_fail_first,
        batch_expire_first=batch_expire_first,
    )  # fmt: skip
    Console(stderr=True).print(f"fake provider on http://{host}:{port}/v1 ({settings})")
    serve_forever(settings, host, port)


@bench_app.command("throughput")
def throughput(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where the JSON and PNG go (default bench/results, or its smoke/)."
        ),
    ] = None,
    duration_s: Annotated[float, typer.Option("--duration-s", min=5.0)] = 30.0,
    latency_ms: Annotated[float, typer.Option("--latency-ms", min=0.0)] = 400.0,
    rpm: Annotated[int, typer.Option("--rpm", min=60)] = 3_000,
    tpm: Annotated[int, typer.Option("--tpm", min=1_000)] = 400_000,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke",
            help="Every case for a second or two at toy sizes (instead of the sizes above), "
            "to check the benchmark runs; its figures mean nothing.",
        ),
    ] = False,
    unknown_limits_only: Annotated[
        bool,
        typer.Option(
            "--unknown-limits-only",
            help="Only the cases with no limit configured (stated in 429s only, or nowhere).",
        ),
    ] = False,
) -> None:
    """Engine at the provider's limit vs a naive baseline, overhead and memory per conversation."""
    console = Console()
    settings = BenchSettings(
        duration_s=duration_s,
        naive_duration_s=max(10.0, duration_s * 2 / 3),
        latency_ms=latency_ms,
        rpm=rpm,
        tpm=tpm,
    )
    if smoke:
        settings = SMOKE_SETTINGS
    if out is None:  # a smoke run never overwrites the README's figures
        out = RESULTS / "smoke" if smoke else RESULTS
    log = lambda line: console.print(f"[dim]{line}[/]")  # noqa: E731
    table = Table(title="rapport bench throughput", title_justify="left")
    for column in ("figure", "measured", "target"):
        table.add_column(column)
    if unknown_limits_only:
        for row in unknown_limit_rows(run_unknown_limits(settings, out, log)):
            table.add_row(*row)
        console.print(table)
        console.print(f"written: {out / 'throughput_unknown_limits.json'}")
        return
    report = run_throughput(settings, out, log=log)
    for row in summary_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"written: {out / 'throughput.json'}, {out / 'throughput.png'}")


@bench_app.command("cost")
def cost(
    out: Annotated[Path, typer.Option("--out", help="Where cost.json goes.")] = RESULTS,
    conversations: Annotated[int, typer.Option("--conversations", min=1, max=10_000)] = 50,
    exchanges: Annotated[int, typer.Option("--exchanges", min=1, max=200)] = 20,
    reply_tokens: Annotated[int, typer.Option("--reply-tokens", min=1)] = 60,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    api: Annotated[
        list[str] | None,
        typer.Option("--api", help="openai and/or anthropic (default both)."),
    ] = None,
    judge: Annotated[
        bool,
        typer.Option(
            "--judge/--no-judge",
            help="Also judge each API's cache-on corpus live and with --batch.",
        ),
    ] = True,
) -> None:
    """Prompt caching off vs on through each API's fake provider: the cache-read share of
    input tokens and the input cost ratio at the shipped list prices, each run's estimate
    against what it used, and the judge cost live vs batch."""
    console = Console()
    apis = tuple(api or ("openai", "anthropic"))
    unknown = sorted(set(apis) - {"openai", "anthropic"})
    if unknown:
        raise RapportError(f"--api: unknown {', '.join(unknown)} (openai or anthropic)")
    settings = CostSettings(
        conversations=conversations,
        exchanges=exchanges,
        max_active=min(conversations, 50),
        reply_tokens=reply_tokens,
        seed=seed,
        judge=judge,
    )
    log = lambda line: console.print(f"[dim]{line}[/]")  # noqa: E731
    report = run_cost(settings, out, log=log, apis=apis)  # type: ignore[arg-type]
    table = Table(title="rapport bench cost", title_justify="left")
    for column in ("figure", "measured", "target"):
        table.add_column(column)
    for row in cost_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"written: {out / 'cost.json'}")


@bench_app.command("scale")
def scale(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where scale.json and scale.md go (default bench/results)."),
    ] = None,
    duration_s: Annotated[float, typer.Option("--duration-s", min=5.0)] = 20.0,
    latency_ms: Annotated[float, typer.Option("--latency-ms", min=0.0)] = 150.0,
    rpm: Annotated[int, typer.Option("--rpm", min=60)] = 3_000,
    replica_rpm: Annotated[int, typer.Option("--replica-rpm", min=60)] = 900,
    workers: Annotated[int, typer.Option("--workers", min=2, max=64)] = 2,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke", help="Every case for a few seconds at toy sizes: runs, means little."
        ),
    ] = False,
) -> None:
    """Ray workers under one leased budget vs one process vs each worker taking the whole
    limit, replicas behind one backend, and on paper the workers a large plan needs
    (needs rapport[ray])."""
    from rapport.bench.scale import SMOKE_SETTINGS, ScaleSettings, case_rows, run_scale
    from rapport.cluster.runtime import require_ray

    require_ray()
    console = Console()
    settings = ScaleSettings(
        rpm=rpm, replica_rpm=replica_rpm, workers=workers, latency_ms=latency_ms,
        duration_s=duration_s,
    )  # fmt: skip
    if smoke:
        settings = SMOKE_SETTINGS
    if out is None:
        out = RESULTS / "smoke" if smoke else RESULTS
    report = run_scale(settings, out, log=lambda line: console.print(f"[dim]{line}[/]"))
    table = Table(title="rapport bench scale", title_justify="left")
    for column in ("case", "limit rpm", "achieved rpm", "achieved / limit", "429s per 1,000"):
        table.add_column(column)
    for row in case_rows(report):
        table.add_row(*row)
    console.print(table)
    for row in report.paper:
        console.print(
            f"{row.limit_rpm:,} rpm: {row.workers_needed} workers, {row.wall_hours:,.1f} h "
            f"for {settings.plan_conversations:,} × {settings.plan_exchanges} exchanges"
        )
    console.print(f"written: {out / 'scale.json'}, {out / 'scale.md'}")


@bench_app.command("dedup")
def dedup(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where dedup.json goes (default bench/results, or its smoke/)."),
    ] = None,
    conversations: Annotated[
        int, typer.Option("--conversations", min=100, max=1_000_000)
    ] = 100_000,
    exchanges: Annotated[int, typer.Option("--exchanges", min=1, max=200)] = 20,
    threshold: Annotated[float, typer.Option("--threshold")] = DEDUP_THRESHOLD,
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="2,000 conversations: runs in seconds, means little."),
    ] = False,
) -> None:
    """The near-duplicate pass (`rapport stats --duplicates`) over a corpus of planted
    near-copies: wall time, peak RSS, clusters found vs planted, then the incremental pass
    after the corpus grows by a tenth."""
    from rapport.bench.dedup import (
        SMOKE_SETTINGS,
        DedupBenchSettings,
        run_dedup_bench,
        summary_rows,
    )
    from rapport.judges.near_duplicates import DedupSettings
    from rapport.stages.dedup import check_threshold

    console = Console()
    settings = DedupBenchSettings(
        conversations=conversations,
        exchanges=exchanges,
        pool_turns=max(10_000, conversations),
    )
    if smoke:
        settings = SMOKE_SETTINGS
    if out is None:
        out = RESULTS / "smoke" if smoke else RESULTS
    dedup_settings = DedupSettings(threshold=check_threshold(threshold, "--threshold"))
    log = lambda line: console.print(f"[dim]{line}[/]")  # noqa: E731
    report = run_dedup_bench(settings, out, dedup_settings, log=log)
    table = Table(title="rapport bench dedup", title_justify="left")
    for column in ("figure", "measured", "target"):
        table.add_column(column)
    for row in summary_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"written: {out / 'dedup.json'}")


@bench_app.command("slots")
def slots(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where slots.json goes (default bench/results, or its smoke/)."),
    ] = None,
    slot_count: Annotated[int, typer.Option("--slots", min=1)] = 16,
    service_ms: Annotated[float, typer.Option("--service-ms", min=1.0)] = 400.0,
    duration_s: Annotated[float, typer.Option("--duration-s", min=5.0)] = 30.0,
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="A few seconds at toy sizes, to check the benchmark runs."),
    ] = False,
) -> None:
    """A server with many slots that queues instead of answering 429: the throughput against
    its capacity and the time requests wait in its queue, with no limit configured."""
    from rapport.bench.slots import SMOKE_SETTINGS, SlotsSettings, run_slots
    from rapport.bench.slots import summary_rows as slots_rows

    console = Console()
    settings = SlotsSettings(slots=slot_count, service_ms=service_ms, duration_s=duration_s)
    if smoke:
        settings = SMOKE_SETTINGS
    if out is None:
        out = RESULTS / "smoke" if smoke else RESULTS
    report = run_slots(settings, out, log=lambda line: console.print(f"[dim]{line}[/]"))
    table = Table(title="rapport bench slots", title_justify="left")
    for column in ("figure", "measured", "target"):
        table.add_column(column)
    for row in slots_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"written: {out / 'slots.json'}")
