"""What `rapport generate --until-passing` prints: the per-stratum outcome of a run, and the
estimate of what reaching the target still takes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rapport.cli.estimate_table import print_estimate
from rapport.stages.until_estimate import PassingEstimate
from rapport.stages.until_passing import PassingSummary


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def stratum_table(summary: PassingSummary) -> Table:
    """Per stratum (topic/flaw): weight, quota, passing counted, judged, yield, surplus."""
    table = Table(title=f"passing set by stratum (target {summary.target:,})")
    for column in ("stratum", "weight", "quota", "passing", "share", "judged", "yield", "surplus"):
        table.add_column(column, justify="left" if column == "stratum" else "right")
    for s in summary.strata:
        share = s.passing / summary.passing if summary.passing else None
        table.add_row(
            s.stratum,
            f"{s.weight:.1%}",
            f"{s.quota:,}",
            f"{s.passing:,}",
            "–" if share is None else f"{share:.1%}",
            f"{s.judged:,}",
            _share(s.yield_share),
            f"{s.surplus:,}",
        )
    return table


def print_passing_estimate(
    estimate: PassingEstimate, console: Console, budget_usd: float | None = None
) -> None:
    """The scenarios still to play and draw, per stratum and in total, then their cost."""
    if estimate.assumed_full_yield:
        basis = "nothing judged yet: assumes 100 % yield (a floor)"
    else:
        basis = "at the yields measured in this corpus (per stratum once it has enough judged)"
    console.print(
        f"until {estimate.target:,} passing: {estimate.passing:,} already pass; "
        f"~{estimate.to_play:,} scenarios still to play (~{estimate.to_draw:,} to draw), {basis}",
        highlight=False,
    )
    table = Table()
    for column in ("stratum", "quota", "passing", "yield", "from", "to play"):
        table.add_column(column, justify="left" if column in ("stratum", "from") else "right")
    for need in estimate.strata:
        to_play = "unreachable (yield 0)" if need.to_play is None else f"{need.to_play:,}"
        table.add_row(
            need.stratum,
            f"{need.quota:,}",
            f"{need.passing:,}",
            f"{need.yield_share:.0%}",
            need.yield_source,
            to_play,
        )
    console.print(table)
    print_estimate(estimate.cost, console, budget_usd)
