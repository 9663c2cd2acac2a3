"""The live progress display of `rapport generate`, `rapport eval` and `rapport judge`."""

from __future__ import annotations

import time
from collections.abc import Mapping

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rapport.config.constants import PROGRESS_REFRESH_PER_S
from rapport.config.prices import PriceTable
from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.engine.accounting import GatewaySnapshot, snapshot_gateways
from rapport.engine.budget import SpendGuard
from rapport.engine.gateway import Gateway
from rapport.engine.progress import JudgingProgress, PassingProgress, RunProgress
from rapport.stages.progress import LiveRun, Progress
from rapport.store.rows import utc_now


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _limits(snapshot: GatewaySnapshot) -> str:
    """The limits in force and where they come from, e.g. ` · 1,130 rpm, 12 in flight (learned)`."""
    parts = []
    if snapshot.rpm_limit is not None:
        parts.append(f"{snapshot.rpm_limit:,} rpm")
    if snapshot.tpm_limit is not None:
        parts.append(f"{snapshot.tpm_limit:,} tpm")
    if snapshot.max_in_flight is not None:
        parts.append(f"{snapshot.max_in_flight:,} in flight")
    if not parts:
        return ""
    source = f" ({snapshot.limits_source})" if snapshot.limits_source else ""
    return f" · {', '.join(parts)}{source}"


def _timeouts(snapshot: GatewaySnapshot) -> str:
    """Timeouts taken as backpressure and the timeout in force once raised, e.g.
    ` · 2 timeouts as backpressure · timeout 24 s (raised)`."""
    parts = ""
    if snapshot.backpressure_timeouts:
        parts += f" · {snapshot.backpressure_timeouts:,} timeouts as backpressure"
    if snapshot.timeout_notice is not None and snapshot.effective_timeout_s is not None:
        parts += f" · timeout {snapshot.effective_timeout_s:.0f} s (raised)"
    return parts


def _cache_share(snapshot: GatewaySnapshot) -> str:
    """The share of input tokens read from the provider's prompt cache, e.g. ` · 83% cached`;
    nothing for a backend with no price and no cache reads (simulated, local)."""
    if not snapshot.prompt_tokens or (snapshot.cost_usd is None and not snapshot.cache_read_tokens):
        return ""
    return f" · {snapshot.cache_read_tokens / snapshot.prompt_tokens:.0%} cached"


def judging_line(judging: JudgingProgress) -> str:
    """Conversation-judge pairs: judged, waiting, being judged, and those with judge failures."""
    return (
        f"{judging.judged:,} judged · {judging.waiting:,} waiting · {judging.active:,} judging · "
        f"{judging.failed_conversations:,} with judge failures ({judging.failed:,} criteria)"
    )


def passing_line(passing: PassingProgress) -> str:
    """--until-passing: the target, the yield so far, what is in flight and drawn."""
    share = passing.yield_share
    yield_text = "…" if share is None else f"{share:.0%}"
    return (
        f"{passing.passing:,}/{passing.target:,} passing · yield {yield_text} "
        f"({passing.passed:,} of {passing.judged:,} judged) · {passing.in_flight:,} in flight · "
        f"{passing.strata_full:,}/{passing.strata:,} strata at quota · "
        f"{passing.drawn:,} scenarios drawn"
    )


def progress_table(
    progress: RunProgress,
    gateways: Mapping[str, Gateway],
    prices: PriceTable,
    redactor: Redactor = PATTERNS_ONLY,
) -> Table:
    """The live table; endpoint names pass through `redactor` (a key in a base_url)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    now = time.monotonic()
    judging = progress.judging
    if judging is None or progress.total:  # `rapport judge` plays no conversations
        table.add_row(
            "conversations",
            f"{progress.finished:,}/{progress.total:,} done · {progress.active:,} active · "
            f"{progress.failed:,} failed",
        )
        table.add_row(
            "throughput",
            f"{progress.requests_window.per_minute(progress.started, now):,.0f} requests/min · "
            f"{progress.tokens_window.per_minute(progress.started, now):,.0f} tokens/min · "
            f"{progress.turns:,} turns ({progress.truncated:,} truncated)",
        )
    if judging is not None:
        table.add_row("judging", judging_line(judging))
    if progress.passing is not None:
        table.add_row("passing", passing_line(progress.passing))
    for snapshot in snapshot_gateways("live", gateways, prices, utc_now()):
        latency = "…" if snapshot.latency_p50_ms is None else f"{snapshot.latency_p50_ms:,.0f} ms"
        cost = "" if snapshot.cost_usd is None else f" · ${snapshot.cost_usd:,.4f}"
        cost += _cache_share(snapshot)
        table.add_row(
            ",".join(snapshot.roles),
            f"{redactor(snapshot.gateway)} · {snapshot.requests:,} requests · p50 {latency} · "
            f"{snapshot.retries:,} retries · {snapshot.rate_limited:,} × 429 · "
            f"{snapshot.failed:,} failed{cost}{_limits(snapshot)}{_timeouts(snapshot)}",
        )
        if snapshot.timeout_notice is not None:  # one line, from when it was raised on
            table.add_row("warning", Text(redactor(snapshot.timeout_notice)))  # (no markup)
    wait = progress.store_wait
    if wait is not None:
        table.add_row(
            "store",
            f"writer waiting for {wait.database} held by {wait.holder} since "
            f"{wait.since:%H:%M:%S} UTC · {wait.spooled_batches:,} batches waiting on disk",
        )
    guard = next((g.spend.guard for g in gateways.values() if g.spend is not None), None)
    if guard is not None:
        table.add_row("budget", budget_line(guard))
    table.add_row(
        "time", f"{_duration(now - progress.started)} elapsed · ETA {_duration(progress.eta_s())}"
    )
    return table


def budget_line(guard: SpendGuard) -> str:
    """What the run's budget (--max-cost) has left, and whether it stopped the run."""
    line = (
        f"${guard.total_spent_usd:,.4f} of ${guard.budget_usd:,.2f} spent "
        f"(${guard.spent_before_usd:,.4f} by earlier runs) · "
        f"${guard.reserved_usd:,.4f} held by calls in flight"
    )
    return line + (" · reached: finishing the calls in flight" if guard.reached else "")


def live_display(console: Console) -> Progress:
    """The terminal's implementation of the stages' progress protocol: the table, redrawn until
    the stage cancels it."""

    async def display(run: LiveRun) -> None:
        def table() -> Table:
            return progress_table(run.progress, run.gateways, run.prices, run.redactor)

        with Live(table(), console=console) as live:
            try:
                while True:
                    live.update(table())
                    await anyio.sleep(1 / PROGRESS_REFRESH_PER_S)
            finally:
                live.update(table())

    return display
