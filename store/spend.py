"""What earlier runs of a plan spent, as their stored gateway counters priced it: the part of
a `--max-cost` budget already used when the same command runs again."""

from __future__ import annotations

import duckdb


def plan_spend(conn: duckdb.DuckDBPyConnection, plan_id: str) -> float:
    """US dollars spent by every earlier `generate` run of the plan (its judging included);
    a gateway with no known price (simulated, local) counts as free."""
    row = conn.execute(
        """
        SELECT coalesce(sum(g.cost_usd), 0)
        FROM gateway_stats g JOIN runs r USING (run_id)
        WHERE r.plan_id = ? AND r.command = 'generate'
        """,
        [plan_id],
    ).fetchone()
    return float(row[0]) if row else 0.0
