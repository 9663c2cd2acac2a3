"""What earlier runs of a plan spent, as their stored gateway counters priced it: the part of
a `--max-cost` budget already used when the same command runs again."""

from __future__ import annotations

import duckdb


def plan_spend(
    conn: duckdb.DuckDBPyConnection,
    plan_id: str,
    command: str,
    backends: tuple[str, str] | None = None,
) -> float:
    """US dollars spent by every earlier run of `command` on the plan (its judging included),
    only those with these (user, assistant) backend labels when given (an eval: one pair of
    sides on the held-out plan); a gateway with no known price (simulated, local) is free."""
    user, assistant = backends if backends is not None else (None, None)
    row = conn.execute(
        """
        SELECT coalesce(sum(g.cost_usd), 0)
        FROM gateway_stats g JOIN runs r USING (run_id)
        WHERE r.plan_id = ? AND r.command = ?
          AND (? IS NULL OR r.user_backend = ?) AND (? IS NULL OR r.assistant_backend = ?)
        """,
        [plan_id, command, user, user, assistant, assistant],
    ).fetchone()
    return float(row[0]) if row else 0.0
