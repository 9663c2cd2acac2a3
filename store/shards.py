"""The `shards` table: which shard of which plan a file plays (`generate --shard K/N`); a merged
corpus keeps the row of every shard merged into it."""

from __future__ import annotations

from datetime import datetime

import duckdb

from rapport.config.shards import Shard


def save_shard(
    conn: duckdb.DuckDBPyConnection, plan_id: str, shard: Shard, count: int, at: datetime
) -> None:
    """Record (or extend: the largest count is kept) this file's shard of the plan."""
    conn.execute(
        """
        INSERT INTO shards (plan_id, shard_index, shard_count, count, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT DO UPDATE SET count = greatest(shards.count, excluded.count),
                                  updated_at = excluded.updated_at
        """,
        [plan_id, shard.index, shard.count, count, at, at],
    )
