"""What crosses between the driver and its Ray workers, as msgspec-encoded bytes: the same
Structs the engine uses in one process, so nothing is re-shaped on the way."""

from __future__ import annotations

import msgspec

from rapport.config.domain import Domain
from rapport.config.run import RunConfig
from rapport.engine.gateway import GatewayStats
from rapport.store.plans import UnfinishedConversation
from rapport.store.rows import StoreEvent

ENCODER = msgspec.msgpack.Encoder()


class WorkerSpec(msgspec.Struct, frozen=True):
    """What a worker builds its engine from: the run's settings, domain and run id."""

    settings: RunConfig
    domain: Domain
    run_id: str
    max_active: int  # conversations alive at once in this worker
    workers: int  # how many share the budget (a worker's static share is limit / workers)
    config_file: str  # named in configuration errors


class GatewayCounters(msgspec.Struct, frozen=True):
    """One gateway's (or one replica's) counters in one worker: totals so far, by the stats'
    own field names, and latencies new since the last report. The driver sums every worker's
    into the gateways it displays and stores."""

    totals: dict[str, int]
    new_latencies_s: list[float]


class WorkerReport(msgspec.Struct, frozen=True):
    """What a worker played since its last report."""

    events: list[StoreEvent]
    turns: int  # totals so far in this worker
    truncated: int
    tokens: int
    active: int
    # by the first role using each gateway; a replica as `ROLE|INDEX` (its place in the list)
    gateways: dict[str, GatewayCounters]
    stopped: tuple[str, str] | None = None  # (kind, message): the provider is unusable
    crashed: str | None = None  # a bug in the worker's engine


def encode_jobs(jobs: list[UnfinishedConversation]) -> bytes:
    return ENCODER.encode(jobs)


def decode_jobs(data: bytes) -> list[UnfinishedConversation]:
    return msgspec.msgpack.decode(data, type=list[UnfinishedConversation])


def latency_count(stats: GatewayStats) -> int:
    """Latencies recorded so far (one per success, one per timeout)."""
    return stats.succeeded + stats.timeouts


def counters(stats: GatewayStats, reported: int) -> GatewayCounters:
    """The counters of a GatewayStats or ReplicaStats, with the latencies recorded since
    `reported` of them were sent."""
    totals = {
        name: value
        for name, value in msgspec.structs.asdict(stats).items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
    fresh = min(len(stats.latencies_s), max(0, latency_count(stats) - reported))
    latencies = list(stats.latencies_s)[len(stats.latencies_s) - fresh :] if fresh else []
    return GatewayCounters(totals=totals, new_latencies_s=latencies)
