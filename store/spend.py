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
    sides on the held-out plan); a gateway with no known price (simulated, local) is free.
    Per run, the larger of its gateway counters' cost (every call, judges and retries of cut
    replies included, but stored only every few seconds) and its stored messages' cost (each
    stored as it came: a run killed with SIGKILL loses none of it)."""
    user, assistant = backends if backends is not None else (None, None)
    row = conn.execute(
        """
        WITH earlier AS (
            SELECT run_id FROM runs
            WHERE plan_id = ? AND command = ?
              AND (? IS NULL OR user_backend = ?) AND (? IS NULL OR assistant_backend = ?)
        ), counted AS (
            SELECT run_id, sum(cost_usd) AS cost FROM gateway_stats
            WHERE run_id IN (SELECT run_id FROM earlier) GROUP BY run_id
        ), stored AS (
            SELECT run_id, sum(cost_usd) AS cost FROM messages
            WHERE run_id IN (SELECT run_id FROM earlier) GROUP BY run_id
        )
        SELECT coalesce(sum(greatest(coalesce(c.cost, 0), coalesce(s.cost, 0))), 0)
        FROM earlier e LEFT JOIN counted c USING (run_id) LEFT JOIN stored s USING (run_id)
        """,
        [plan_id, command, user, user, assistant, assistant],
    ).fetchone()
    return float(row[0]) if row else 0.0
