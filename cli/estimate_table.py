"""`rapport generate --estimate`: the estimate as a table, with what it rests on."""

from __future__ import annotations

from rich.console import Console

from rapport.cli.render import Rows, as_table, print_table
from rapport.stages.estimate import Estimate

COLUMNS = (
    "role", "backend", "requests", "input_tokens", "cache_read", "cache_write",
    "output_tokens", "cost_usd", "cost_uncached_usd", "tokens_per_reply", "reply_lengths",
)  # fmt: skip


def _usd(value: float | None) -> str:
    return "unknown price" if value is None else f"${value:,.4f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:,.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def print_estimate(estimate: Estimate, console: Console, budget_usd: float | None) -> None:
    """The table per role and in total, then the wall time and, with a budget, the fit."""
    rows = [
        (
            r.role,
            r.backend,
            r.requests,
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.output_tokens,
            _usd(r.cost_usd),
            _usd(r.cost_uncached_usd),
            round(r.reply_tokens, 1),
            r.reply_source,
        )
        for r in estimate.roles
    ]
    rows.append(
        (
            "total",
            "",
            estimate.requests,
            estimate.input_tokens,
            estimate.cache_read_tokens,
            estimate.cache_write_tokens,
            estimate.output_tokens,
            _usd(estimate.cost_usd),
            _usd(estimate.cost_uncached_usd),
            None,
            "",
        )
    )
    title = (
        f"Estimate for plan {estimate.plan_id}: {estimate.conversations:,} conversations to play"
        f" ({estimate.laid_out:,} laid out call by call), no model called"
    )
    print_table(as_table(Rows(COLUMNS, tuple(rows)), title=title), console)
    if estimate.wall_s is None:
        console.print(f"wall time: {estimate.wall_note}", highlight=False)
    else:
        console.print(
            f"wall time: at least {_duration(estimate.wall_s)} ({estimate.wall_note})",
            highlight=False,
        )
    if budget_usd is not None and estimate.cost_usd is not None:
        fits = "fits within" if estimate.cost_usd <= budget_usd else "is over"
        console.print(
            f"the estimate {fits} the budget of ${budget_usd:,.2f} (earlier runs' spend counts "
            "against it too)",
            highlight=False,
        )
