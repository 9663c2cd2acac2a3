"""`rapport bench scale`: past one process, against the fake provider on loopback.

(1) One provider limit, played by one process, by 2 Ray workers sharing one leased budget,
and by 2 Ray workers each taking the whole limit (the naive configuration: what two separate
processes on one key do): achieved / limit and 429s per 1,000 requests. (2) 4 fake replicas,
each with its own limit, behind one backend, played by the Ray workers: achieved / the sum.
(3) On paper, from the measured per-worker ceiling: wall time and workers for a large plan
at given provider limits. Rates are read from the stored turns' timestamps after a warm-up;
each case runs for a fixed time and is stopped (stored as interrupted).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec

from rapport.engine.progress import RunProgress
from rapport.fakes.provider import FakeProviderSettings
from rapport.fakes.provider_process import provider_process
from rapport.stages.generate import GenerateRequest, prepare, simulate, store_plan
from rapport.store.database import connect
from rapport.store.run_lock import exclusive_run

KEY_ENV = "RAPPORT_BENCH_KEY"
TARGETS = {"achieved_fraction": 0.95, "rate_limited_per_1000": 5.0}


class ScaleSettings(msgspec.Struct, frozen=True):
    rpm: int = 3_000  # the one provider limit of part (1)
    replicas: int = 4
    replica_rpm: int = 900  # each replica's own limit in part (2)
    workers: int = 2
    latency_ms: float = 150.0
    duration_s: float = 20.0
    warmup_s: float = 4.0
    max_active: int = 96  # conversations alive at once, all workers together
    turns: int = 6
    max_tokens: int = 40
    count: int = 20_000  # more than any case can play in its time
    plan_conversations: int = 100_000  # the on-paper plan
    plan_exchanges: int = 20
    paper_limits_rpm: tuple[int, ...] = (10_000, 30_000, 100_000, 300_000)


SMOKE_SETTINGS = ScaleSettings(
    rpm=1_200, replica_rpm=300, duration_s=6.0, warmup_s=2.0, max_active=24, count=2_000
)


class ScaleCase(msgspec.Struct, frozen=True):
    name: str
    workers: int  # 0: one process, no Ray
    limit_rpm: int | None  # what the provider(s) allow together
    measured_s: float
    requests_per_min: float
    achieved_fraction: float | None
    requests: int
    rate_limited: int
    rate_limited_per_1000: float


class PaperRow(msgspec.Struct, frozen=True):
    limit_rpm: int
    workers_needed: int
    wall_hours: float


class ScaleReport(msgspec.Struct, frozen=True):
    settings: ScaleSettings
    one_process: ScaleCase
    ray_shared: ScaleCase
    ray_naive: ScaleCase
    replicas: ScaleCase
    worker_ceiling: ScaleCase  # one worker, no limit anywhere: what a worker can push
    paper: tuple[PaperRow, ...]
    targets: dict[str, float]


def _role(base_url: str, settings: ScaleSettings, rpm: int | None) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "fake-model",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "max_tokens": settings.max_tokens,
        "rpm": rpm,
        "max_retries": 8,
        "timeout_s": 30,
    }


def _write_config(path: Path, role: dict[str, Any]) -> Path:
    path.write_bytes(msgspec.json.encode({"backends": {"user_sim": role, "assistant": role}}))
    return path


def _readings(db: Path, warmup_s: float, replicas: bool) -> tuple[float, float, int, int]:
    """(seconds measured, requests per minute after the warm-up, requests, 429s)."""
    with connect(db, read_only=True) as conn:
        started = conn.execute("SELECT epoch(min(created_at)) FROM messages").fetchone()[0]
        per_second = dict(
            conn.execute(
                "SELECT floor(epoch(created_at) - ?)::INTEGER, count(*) FROM messages GROUP BY 1",
                [started],
            ).fetchall()
        )
        where = "endpoint IS NOT NULL" if replicas else "endpoint IS NULL"
        requests, limited = conn.execute(
            f"SELECT coalesce(sum(requests), 0), coalesce(sum(rate_limited), 0) "
            f"FROM gateway_stats WHERE {where}"
        ).fetchone()
    last = max(per_second) if per_second else 0
    window = range(int(warmup_s), max(int(warmup_s) + 1, last))  # the last second is partial
    served = sum(per_second.get(second, 0) for second in window)
    return float(len(window)), served * 60.0 / len(window), int(requests), int(limited)


def _play(request: GenerateRequest, duration_s: float, cluster: Any | None) -> None:
    """Generate for `duration_s` from the first turn, then stop (in this process, or on the
    Ray cluster, whose workers take a few seconds to start)."""
    generation = prepare(request, {KEY_ENV: "bench-key"})
    player = None
    if cluster is not None:
        from rapport.cluster.driver import RayPlayer

        player = RayPlayer(cluster, generation.settings, str(request.config))
    with exclusive_run(request.db):
        store_plan(generation)

        async def go() -> None:
            progress = RunProgress(total=request.count)
            async with anyio.create_task_group() as group:

                async def stop_later() -> None:  # timed from the first turn: workers start first
                    while progress.turns == 0:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                    await anyio.sleep(duration_s)
                    group.cancel_scope.cancel()

                group.start_soon(stop_later)
                await simulate(generation, progress, None, player)
                group.cancel_scope.cancel()

        anyio.run(go)


def run_case(
    name: str,
    workdir: Path,
    settings: ScaleSettings,
    role: dict[str, Any],
    limit_rpm: int | None,
    cluster: Any | None,
    workers: int,
    log: Callable[[str], None] = print,
) -> ScaleCase:
    config = _write_config(workdir / f"{name}.json", role)
    db = workdir / f"{name}.duckdb"
    request = GenerateRequest(
        db=db,
        count=settings.count,
        config=config,
        max_active=settings.max_active,
        turns=settings.turns,
    )
    _play(request, settings.duration_s, cluster)
    seconds, rpm, requests, limited = _readings(db, settings.warmup_s, "replicas" in role)
    log(f"  {name}: {rpm:,.0f} requests/min, {requests:,} requests, {limited:,} × 429")
    return ScaleCase(
        name=name,
        workers=workers,
        limit_rpm=limit_rpm,
        measured_s=seconds,
        requests_per_min=rpm,
        achieved_fraction=rpm / limit_rpm if limit_rpm else None,
        requests=requests,
        rate_limited=limited,
        rate_limited_per_1000=1000.0 * limited / max(1, requests),
    )


@contextmanager
def _providers(settings: ScaleSettings, count: int, rpm: int | None) -> Iterator[list[str]]:
    provider = FakeProviderSettings(rpm=rpm, latency_ms=settings.latency_ms, reply_tokens=30)
    with ExitStack() as stack:
        yield [stack.enter_context(provider_process(provider)) for _ in range(count)]


def paper_rows(settings: ScaleSettings, ceiling_rpm: float, fraction: float) -> list[PaperRow]:
    """Workers and wall time for the on-paper plan: each exchange is two requests (user
    simulator and assistant); a worker pushes at most `ceiling_rpm`, the cluster at most
    `fraction` of the provider's limit."""
    requests = settings.plan_conversations * settings.plan_exchanges * 2
    rows = []
    for limit in settings.paper_limits_rpm:
        usable = limit * fraction
        workers = max(1, math.ceil(usable / ceiling_rpm))
        rate = min(usable, workers * ceiling_rpm)
        rows.append(PaperRow(limit, workers, requests / rate / 60.0))
    return rows


def run_scale(
    settings: ScaleSettings, out: Path, log: Callable[[str], None] = print
) -> ScaleReport:
    """Every case in one run (one local Ray cluster for the Ray cases); writes JSON and
    Markdown under `out`."""
    from rapport.cluster.driver import ClusterRequest
    from rapport.cluster.runtime import require_ray

    ray = require_ray()
    out.mkdir(parents=True, exist_ok=True)
    os.environ[KEY_ENV] = "bench-key"  # the workers' environment
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    workdir = Path(tempfile.mkdtemp(prefix="rapport-scale-"))  # the cases' corpora: not kept
    shared = ClusterRequest(workers=settings.workers)
    naive = ClusterRequest(workers=settings.workers, shared_budget=False)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(
            num_cpus=max(2, settings.workers),
            include_dashboard=False,
            object_store_memory=100 * 1024 * 1024,
            log_to_driver=False,
        )
    try:
        with _providers(settings, 1, settings.rpm) as (url,):
            role = _role(url, settings, settings.rpm)
            log(f"one process at {settings.rpm:,} rpm")
            one = run_case("one_process", workdir, settings, role, settings.rpm, None, 0, log=log)
            log(f"{settings.workers} Ray workers, one leased budget")
            ray_shared = run_case(
                "ray_shared",
                workdir,
                settings,
                role,
                settings.rpm,
                shared,
                settings.workers,
                log=log,
            )
        with _providers(settings, 1, settings.rpm) as (url,):  # a fresh provider bucket
            log(f"{settings.workers} Ray workers, each taking the whole limit (naive)")
            role = _role(url, settings, settings.rpm)
            ray_naive = run_case(
                "ray_naive", workdir, settings, role, settings.rpm, naive, settings.workers, log=log
            )
        with _providers(settings, settings.replicas, settings.replica_rpm) as urls:
            log(f"{settings.replicas} replicas at {settings.replica_rpm:,} rpm each")
            role = _role(urls[0], settings, None)
            role["replicas"] = [{"base_url": u, "rpm": settings.replica_rpm} for u in urls]
            total = settings.replicas * settings.replica_rpm
            replicas = run_case(
                "replicas", workdir, settings, role, total, shared, settings.workers, log=log
            )
        with _providers(settings, 1, None) as (url,):
            log("one Ray worker, no limit: a worker's ceiling")
            role = _role(url, settings, None)
            role["max_in_flight"] = settings.max_active * 2
            ceiling = run_case(
                "worker_ceiling",
                workdir,
                settings,
                role,
                None,
                ClusterRequest(workers=1),
                1,
                log=log,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if started_ray:
            ray.shutdown()
    fraction = ray_shared.achieved_fraction or 1.0
    report = ScaleReport(
        settings=settings,
        one_process=one,
        ray_shared=ray_shared,
        ray_naive=ray_naive,
        replicas=replicas,
        worker_ceiling=ceiling,
        paper=tuple(paper_rows(settings, ceiling.requests_per_min, min(1.0, fraction))),
        targets=TARGETS,
    )
    (out / "scale.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    (out / "scale.md").write_text(markdown(report))
    return report


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _label(case: ScaleCase) -> str:
    workers = f"{case.workers} Ray worker{'s' if case.workers > 1 else ''}"
    return {
        "one_process": "one process",
        "ray_shared": f"{workers}, one leased budget",
        "ray_naive": f"{workers}, each taking the whole limit (naive)",
        "replicas": f"{workers}, replicas behind one backend, each its own limit",
        "worker_ceiling": f"{workers}, no limit (a worker's ceiling)",
    }.get(case.name, case.name)


def case_rows(report: ScaleReport) -> list[tuple[str, str, str, str, str]]:
    """(case, limit, achieved req/min, achieved / limit, 429s per 1,000)."""
    rows = []
    for case in (
        report.one_process,
        report.ray_shared,
        report.ray_naive,
        report.replicas,
        report.worker_ceiling,
    ):
        limit = "none" if case.limit_rpm is None else f"{case.limit_rpm:,}"
        rows.append(
            (
                _label(case),
                limit,
                f"{case.requests_per_min:,.0f}",
                _pct(case.achieved_fraction),
                f"{case.rate_limited_per_1000:.1f}",
            )
        )
    return rows


def markdown(report: ScaleReport) -> str:
    s = report.settings
    lines = [
        "# rapport bench scale",
        "",
        f"Fake provider on loopback, {s.latency_ms:.0f} ms median latency, "
        f"{s.duration_s:.0f} s per case ({s.warmup_s:.0f} s warm-up left out), "
        f"{s.max_active} conversations alive in all, {s.workers} Ray workers.",
        "",
        "| case | limit (req/min) | achieved (req/min) | achieved / limit | 429s per 1,000 |",
        "|---|---:|---:|---:|---:|",
        *(f"| {' | '.join(row)} |" for row in case_rows(report)),
        "",
        f"Targets: achieved / limit ≥ {TARGETS['achieved_fraction']:.0%}, "
        f"429s per 1,000 ≤ {TARGETS['rate_limited_per_1000']:.0f}.",
        "",
        f"On paper: {s.plan_conversations:,} conversations × {s.plan_exchanges} exchanges "
        f"({s.plan_conversations * s.plan_exchanges * 2:,} requests), one worker pushing "
        f"{report.worker_ceiling.requests_per_min:,.0f} req/min (measured ceiling), the "
        f"cluster {_pct(report.ray_shared.achieved_fraction)} of the limit:",
        "",
        "| provider limit (req/min) | workers needed | wall time (h) |",
        "|---:|---:|---:|",
        *(f"| {r.limit_rpm:,} | {r.workers_needed} | {r.wall_hours:,.1f} |" for r in report.paper),
        "",
    ]
    return "\n".join(lines)
