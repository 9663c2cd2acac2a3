"""`rapport bench slots`: a local server with many slots and no rate limit (vLLM, llama.cpp
`-np 16`, TGI) that queues what it cannot serve at once instead of answering 429. The real
engine, with no limit configured, through the real openai SDK, against the fake provider with
`slots` on loopback: how close to the server's capacity (slots / service time) it runs, and how
long its requests wait in the server's queue beside their service time (the fake notes both
per request). Keeping the slots full is easy by flooding the queue; the figure that matters is
the two together."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from rapport.bench.throughput import _run_config, _timed_generate
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.generate import GenerateRequest
from rapport.store.reads import ThroughputReadings, throughput_readings

TARGETS = {"capacity_fraction": 0.90, "queue_wait_share_of_service": 0.50}


class SlotsSettings(msgspec.Struct, frozen=True):
    """The benchmark's sizes; the defaults are the run behind the README's figures."""

    slots: int = 16
    service_ms: float = 400.0  # median service time of one request in a slot
    service_sigma: float = 0.25  # its lognormal spread (the fake's default)
    duration_s: float = 30.0
    warmup_s: float = 8.0  # left out of the figures (the cap is being learned)
    conversations: int = 64  # played at once: far more requests than slots, if all were sent
    turns: int = 10
    planned: int = 100_000  # more than it can play in duration_s


# `rapport bench slots --smoke`: a few seconds at toy sizes, so a test can run the benchmark;
# its figures say nothing about the engine.
SMOKE_SETTINGS = SlotsSettings(
    slots=4, service_ms=50.0, duration_s=3.0, warmup_s=1.0, conversations=16, planned=500
)


class SlotsReport(msgspec.Struct, frozen=True):
    settings: SlotsSettings
    capacity_per_s: float  # slots / mean service time measured
    served_per_s: float  # requests the server finished per second after the warm-up
    capacity_fraction: float
    mean_queue_wait_ms: float  # of requests that arrived after the warm-up
    mean_service_ms: float
    queue_wait_share_of_service: float
    requests: int  # measured (after the warm-up)
    learned_in_flight: int | None
    rate_limited: int
    failed_conversations: int
    targets: dict[str, float]


def run_slots(
    settings: SlotsSettings, out: Path, log: Callable[[str], None] = print
) -> SlotsReport:
    """Generate for `duration_s` against the fake with `slots`, then read what it noted."""
    out.mkdir(parents=True, exist_ok=True)
    provider = FakeProviderSettings(
        slots=settings.slots,
        latency_ms=settings.service_ms,
        latency_sigma=settings.service_sigma,
        reply_tokens=60,
        limit_headers="never",
    )
    log(
        f"{settings.slots} slots, {settings.service_ms:.0f} ms a request, queued never refused; "
        f"{settings.conversations} conversations at once, no limit configured"
    )
    with tempfile.TemporaryDirectory(prefix="rapport-bench-") as tmp:
        workdir = Path(tmp)
        db = workdir / "slots.duckdb"
        with running_fake_provider(provider) as (base_url, state):
            config = _run_config(workdir / "slots.yaml", base_url, None, None, max_tokens=120)
            request = GenerateRequest(
                db=db,
                count=settings.planned,
                config=config,
                max_active=settings.conversations,
                turns=settings.turns,
            )
            _timed_generate(request, settings.duration_s)
            served = list(state.slot_times)
        readings = throughput_readings(db)
    report = slots_report(settings, served, readings)
    (out / "slots.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    return report


def slots_report(
    settings: SlotsSettings,
    served: list[tuple[float, float, float]],
    readings: ThroughputReadings,
) -> SlotsReport:
    """The figures from the server's own notes: (arrived, queued, service) per request."""
    if not served:
        raise RuntimeError("the fake server served nothing: the engine never reached it")
    first = min(arrived for arrived, _, _ in served)
    start = first + settings.warmup_s
    end = max(arrived + queued + service for arrived, queued, service in served)
    measured = [(queued, service) for arrived, queued, service in served if arrived >= start]
    finished = sum(1 for a, q, s in served if start <= a + q + s <= end)
    mean_service = sum(s for _, s in measured) / max(1, len(measured))
    mean_queued = sum(q for q, _ in measured) / max(1, len(measured))
    capacity = settings.slots / mean_service if mean_service else 0.0
    served_per_s = finished / max(end - start, 1e-9)
    return SlotsReport(
        settings=settings,
        capacity_per_s=capacity,
        served_per_s=served_per_s,
        capacity_fraction=served_per_s / capacity if capacity else 0.0,
        mean_queue_wait_ms=1000 * mean_queued,
        mean_service_ms=1000 * mean_service,
        queue_wait_share_of_service=mean_queued / mean_service if mean_service else 0.0,
        requests=len(measured),
        learned_in_flight=readings.learned_in_flight,
        rate_limited=readings.rate_limited or 0,
        failed_conversations=readings.failed,
        targets=TARGETS,
    )


def summary_rows(report: SlotsReport) -> list[tuple[str, str, str]]:
    """(figure, measured, target) rows for the terminal and the README."""
    return [
        (
            "served / capacity (slots / service time)",
            f"{report.served_per_s:,.1f} / {report.capacity_per_s:,.1f} requests/s "
            f"= {100 * report.capacity_fraction:.1f} %",
            "≥ 90 %",
        ),
        (
            "mean wait in the server's queue / service time",
            f"{report.mean_queue_wait_ms:,.0f} / {report.mean_service_ms:,.0f} ms "
            f"= {100 * report.queue_wait_share_of_service:.0f} %",
            "≤ 50 %",
        ),
        (
            "learned in-flight cap · 429s · failed conversations",
            f"{report.learned_in_flight or '-'} · {report.rate_limited} · "
            f"{report.failed_conversations}",
            "· 0 · 0",
        ),
    ]
