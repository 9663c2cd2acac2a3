"""What a run's messages used and cost, as Rapport stored them (its own parsing of each API's
usage fields), for `rapport bench cost` to hold against the provider's own counts."""

from __future__ import annotations

from pathlib import Path

import msgspec

from rapport.store.database import connect


class StoredUsage(msgspec.Struct, frozen=True):
    messages: int
    prompt_tokens: int  # every input token
    cache_read_tokens: int
    cache_write_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: no message has a known price


def stored_usage(db: Path) -> StoredUsage:
    with connect(db, read_only=True) as conn:
        row = conn.execute(
            """
            SELECT count(*), coalesce(sum(prompt_tokens), 0)::BIGINT,
                   coalesce(sum(cache_read_tokens), 0)::BIGINT,
                   coalesce(sum(cache_write_tokens), 0)::BIGINT,
                   coalesce(sum(completion_tokens), 0)::BIGINT, sum(cost_usd)
            FROM messages
            """
        ).fetchone()
    assert row is not None
    return StoredUsage(*row)
