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


class EstimateVsActual(msgspec.Struct, frozen=True):
    """A generate run's own estimate (made before its first call) against what it used."""

    estimated_requests: int
    requests: int
    estimated_input_tokens: int
    input_tokens: int
    estimated_output_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None
    cost_usd: float | None


def estimate_vs_actual(db: Path) -> EstimateVsActual | None:
    """The latest run's (a benchmark's main run, after its pilot)."""
    with connect(db, read_only=True) as conn:
        row = conn.execute(
            """
            SELECT estimated_requests, requests, estimated_input_tokens, input_tokens,
                   estimated_output_tokens, output_tokens, estimated_cost_usd, cost_usd
            FROM estimate_vs_actual ORDER BY started_at DESC LIMIT 1
            """
        ).fetchone()
    return None if row is None else EstimateVsActual(*row)


class JudgeUsage(msgspec.Struct, frozen=True):
    requests: int  # judge calls, live or as batch items
    prompt_tokens: int
    cost_usd: float | None  # at the batch price for batch items; None: no known price


def judge_usage(db: Path) -> JudgeUsage:
    """What every `rapport judge` run on this database used, from its gateway stats."""
    with connect(db, read_only=True) as conn:
        row = conn.execute(
            """
            SELECT coalesce(sum(g.requests), 0)::BIGINT, coalesce(sum(g.prompt_tokens), 0)::BIGINT,
                   sum(g.cost_usd)
            FROM gateway_stats g JOIN runs r USING (run_id) WHERE r.command = 'judge'
            """
        ).fetchone()
    assert row is not None
    return JudgeUsage(*row)
