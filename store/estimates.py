"""The estimate of a run, stored as it starts (`estimates`), for `stats` to compare."""

from __future__ import annotations

from datetime import datetime

import duckdb


def save_estimate(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float | None,
    cost_uncached_usd: float | None,
    wall_s: float | None,
    at: datetime,
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO estimates (run_id, requests, input_tokens, output_tokens, "
        "cost_usd, cost_uncached_usd, wall_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, requests, input_tokens, output_tokens, cost_usd, cost_uncached_usd, wall_s, at],
    )
