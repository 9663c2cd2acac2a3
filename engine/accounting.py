"""What a gateway's calls used and cost: the counters kept as each call ends (requests, tokens,
latency, cost at the gateway's price) and the snapshots of them that are stored per run and
displayed. Kept apart from admission and retries, which only decide when a call is made."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from rapport.config.prices import PriceTable, usage_cost
from rapport.config.run import Price
from rapport.engine.backend import simulated
from rapport.engine.types import Completion

if TYPE_CHECKING:  # the gateway counts with these: a runtime import would be a cycle
    from rapport.engine.gateway import Gateway

LATENCY_SAMPLES = 10_000


class GatewayStats(msgspec.Struct):
    """Counters of one gateway, read by the progress display and stored per run."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    timeouts: int = 0  # calls given up on at timeout_s: a reply that never came
    backpressure_timeouts: int = 0  # of those, retried as a 429 is (learned in-flight cap)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it
    cost_usd: float = 0.0  # summed per call at the gateway's price (0 without one)
    in_flight: int = 0
    latencies_s: deque[float] = msgspec.field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def latency_percentile(self, fraction: float) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def count_completion(
    stats: GatewayStats, completion: Completion, price: Price | None = None
) -> Completion:
    """Count a call that succeeded: its tokens and latency, and its cost at `price` (None: no
    known price), which the returned completion then carries."""
    stats.succeeded += 1
    stats.prompt_tokens += completion.prompt_tokens
    stats.completion_tokens += completion.completion_tokens
    stats.latencies_s.append(completion.latency_s)
    if completion.cache_read_tokens or completion.cache_write_tokens:
        stats.cache_read_tokens += completion.cache_read_tokens
        stats.cache_write_tokens += completion.cache_write_tokens
    if price is None:
        return completion
    cost = usage_cost(
        price,
        completion.prompt_tokens,
        completion.completion_tokens,
        cache_read_tokens=completion.cache_read_tokens,
        cache_write_tokens=completion.cache_write_tokens,
    )
    stats.cost_usd += cost
    return msgspec.structs.replace(completion, cost_usd=cost)


def count_failure(stats: GatewayStats, kind: str, waited_s: float) -> None:
    """Count a call that failed: a 429, or a timeout (its full time counts in the latencies)."""
    if kind == "rate_limited":
        stats.rate_limited += 1
    elif kind == "timeout":
        stats.timeouts += 1
        stats.latencies_s.append(waited_s)


class GatewaySnapshot(msgspec.Struct, frozen=True):
    run_id: str
    gateway: str
    roles: list[str]  # the roles that use this gateway
    provider: str
    model: str
    requests: int
    succeeded: int
    failed: int
    retries: int
    rate_limited: int
    prompt_tokens: int
    completion_tokens: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    cost_usd: float | None
    rpm_limit: int | None  # configured, stated by the provider, or learned (limits_source)
    tpm_limit: int | None
    updated_at: datetime
    max_in_flight: int | None = None
    limits_source: str | None = None  # configured | stated | learned; None: unlimited
    timeouts: int = 0
    endpoint: str | None = None  # one replica of a backend with several (engine.replicas)
    cache_read_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it
    backpressure_timeouts: int = 0  # of timeouts: retried as 429s are (learned in-flight cap)
    effective_timeout_s: float | None = None  # what requests are sent with (None: none known)
    timeout_notice: str | None = None  # the line said when the timeout was raised to fit


def gateway_name(gateway: Gateway) -> str:
    base_url = getattr(gateway.backend, "base_url", None)
    return f"{gateway.label}@{base_url}" if base_url else gateway.label


def snapshot_gateways(
    run_id: str, gateways: Mapping[str, Gateway], prices: PriceTable, at: datetime
) -> list[GatewaySnapshot]:
    """One snapshot per distinct gateway, naming the roles that share it."""
    roles: dict[int, list[str]] = {}
    by_id: dict[int, Gateway] = {}
    for role, gateway in gateways.items():
        roles.setdefault(id(gateway), []).append(role)
        by_id[id(gateway)] = gateway
    snapshots = []
    for key, gateway in by_id.items():
        stats = gateway.stats
        limits = gateway.effective_limits
        model = gateway.backend.model
        cost = None
        if gateway.price is not None:  # summed per call, each at its own price
            cost = stats.cost_usd
        elif not simulated(gateway.backend):
            cost = prices.cost(
                model,
                stats.prompt_tokens,
                stats.completion_tokens,
                cache_read_tokens=stats.cache_read_tokens,
                cache_write_tokens=stats.cache_write_tokens,
            )
        snapshots.append(
            GatewaySnapshot(
                run_id=run_id,
                gateway=gateway_name(gateway),
                roles=roles[key],
                provider=gateway.backend.provider,
                model=model,
                cost_usd=cost,
                rpm_limit=limits.rpm,
                tpm_limit=limits.tpm,
                updated_at=at,
                max_in_flight=limits.max_in_flight,
                limits_source=gateway.limits_source,
                effective_timeout_s=gateway.effective_timeout_s,
                timeout_notice=gateway.timeout_notice,
                **_counters(stats),
            )
        )
        snapshots += replica_snapshots(snapshots[-1], gateway, prices)
    return snapshots


def replica_snapshots(
    whole: GatewaySnapshot, gateway: Gateway, prices: PriceTable
) -> list[GatewaySnapshot]:
    """A row per replica of a backend with several: its own requests, 429s, tokens, latency
    and limits, named `<gateway>@<replica>`; the gateway's own row holds the totals."""
    replicas = getattr(gateway.backend, "replicas", None)
    if not replicas:
        return []
    rows = []
    for replica in replicas:
        stats = replica.stats
        rows.append(
            msgspec.structs.replace(
                whole,
                gateway=f"{whole.gateway}@{replica.name}",
                endpoint=replica.name,
                **_counters(stats),
                cost_usd=prices.cost(
                    whole.model,
                    stats.prompt_tokens,
                    stats.completion_tokens,
                    cache_read_tokens=stats.cache_read_tokens,
                    cache_write_tokens=stats.cache_write_tokens,
                ),
                rpm_limit=replica.limits.rpm,
                tpm_limit=replica.limits.tpm,
                max_in_flight=replica.limits.max_in_flight,
                limits_source="configured" if replica.limits.has_rates else None,
            )
        )
    return rows


def _counters(stats: GatewayStats) -> dict[str, object]:
    """The snapshot's fields that come straight from a gateway's (or a replica's) counters."""
    p50 = stats.latency_percentile(0.50)
    p99 = stats.latency_percentile(0.99)
    return {
        "requests": stats.requests,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "retries": stats.retries,
        "rate_limited": stats.rate_limited,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "latency_p50_ms": None if p50 is None else p50 * 1000,
        "latency_p99_ms": None if p99 is None else p99 * 1000,
        "timeouts": stats.timeouts,
        "backpressure_timeouts": stats.backpressure_timeouts,
        "cache_read_tokens": stats.cache_read_tokens,
        "cache_write_tokens": stats.cache_write_tokens,
    }
