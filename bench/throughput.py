"""`rapport bench throughput`: the real engine, through the real openai SDK, against the fake
provider on loopback. Measures how close to the provider's limit multi-turn simulation runs,
against a naive one-conversation-at-a-time baseline measured in the same run, plus the
engine's own overhead and memory per active conversation."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec
import psutil

from rapport.bench.skeleton import skeleton_turns_per_s
from rapport.engine.progress import RunProgress
from rapport.fakes.provider import FakeProviderSettings
from rapport.fakes.provider_process import provider_process
from rapport.stages.generate import GenerateRequest, count_statuses, prepare, simulate, store_plan
from rapport.store.reads import throughput_readings
from rapport.store.run_lock import exclusive_run

BENCH_KEY_ENV = "RAPPORT_BENCH_KEY"
OVERHEAD_ACTIVE = 1_000  # conversations at once in the overhead cases (engine and skeleton)
WARMUP_S = 3.0
TARGETS = {
    "rpm_fraction": 0.98,
    "tpm_fraction": 0.95,
    "rate_limited_per_1000": 5.0,
    "vs_naive": 10.0,
    "overhead_turns_per_s": 10_000.0,
    "vs_skeleton": 0.5,
    "kb_per_active_conversation": 32.0,
    "unknown_limits_rpm_fraction": 0.90,
    "unknown_limits_rate_limited_per_1000_successes": 50.0,
}


class BenchSettings(msgspec.Struct, frozen=True):
    """The benchmark's sizes; the defaults are the run behind the README's figures."""

    duration_s: float = 30.0
    naive_duration_s: float = 20.0
    latency_ms: float = 400.0
    rpm: int = 3_000
    tpm: int = 400_000
    overhead_conversations: int = 1_000
    memory_small: int = 1_000
    memory_large: int = 10_000
    warmup_s: float = WARMUP_S  # left out of the measured rates (the ramp-up)
    planned: int = 100_000  # conversations planned per engine case: more than it can play
    naive_planned: int = 10_000
    overhead_turns: int = 20
    memory_latency_ms: float = 4_000.0  # keeps every conversation alive while RSS is sampled
    unknown_rpm: int = 1_200  # the provider's limit when the engine is told none


# `rapport bench throughput --smoke`: every case for a second or two at toy sizes, so a test can
# run the whole benchmark; its figures say nothing about the engine.
SMOKE_SETTINGS = BenchSettings(
    duration_s=2.0,
    naive_duration_s=1.5,
    latency_ms=20.0,
    overhead_conversations=20,
    memory_small=5,
    memory_large=10,
    warmup_s=0.0,
    planned=200,
    naive_planned=20,
    overhead_turns=4,
    memory_latency_ms=100.0,
)


class CaseResult(msgspec.Struct, frozen=True):
    name: str
    limit_rpm: int | None
    limit_tpm: int | None
    measured_s: float
    requests_per_min: float
    tokens_per_min: float
    rpm_fraction: float | None
    tpm_fraction: float | None
    requests: int
    rate_limited: int
    rate_limited_per_1000: float
    retries: int
    p50_latency_ms: float | None
    p99_latency_ms: float | None
    per_second_requests: list[int]
    per_second_tokens: list[int]
    failed_conversations: int = 0
    succeeded: int = 0
    rate_limited_per_1000_successes: float = 0.0
    learned_rpm: int | None = None
    learned_in_flight: int | None = None


class ThroughputReport(msgspec.Struct, frozen=True):
    settings: BenchSettings
    rpm_bound: CaseResult
    tpm_bound: CaseResult
    naive: CaseResult
    vs_naive: float
    overhead_turns_per_s: float  # the null backend: the engine's own limit
    overhead_conversations_per_s: float
    rss_small_mb: float
    rss_large_mb: float
    kb_per_active_conversation: float
    targets: dict[str, float]
    unknown_limits: tuple[CaseResult, ...] = ()
    skeleton_turns_per_s: float = 0.0  # two tasks per conversation + one DuckDB writer, bare
    vs_skeleton: float = 0.0  # overhead_turns_per_s / skeleton_turns_per_s
    simulated_turns_per_s: float = 0.0  # the instant simulated backend (it writes its text)


def _run_config(
    path: Path, base_url: str, rpm: int | None, tpm: int | None, max_tokens: int
) -> Path:
    role = {
        "provider": "openai",
        "base_url": base_url,
        "api_key_env": BENCH_KEY_ENV,
        "max_tokens": max_tokens,
        "rpm": rpm,
        "tpm": tpm,
        "max_retries": 8,
        "timeout_s": 30,
    }
    config = {
        "backends": {
            "user_sim": {**role, "model": "fake-model"},
            "assistant": {**role, "model": "fake-model"},
        }
    }
    path.write_bytes(msgspec.json.encode(config))  # JSON is YAML
    return path


def _timed_generate(request: GenerateRequest, duration_s: float) -> None:
    """Generate until `duration_s` has passed, then stop (the run is stored as interrupted)."""
    generation = prepare(request, {BENCH_KEY_ENV: "bench-key"})
    with exclusive_run(request.db):
        store_plan(generation)

        async def go() -> None:
            with anyio.move_on_after(duration_s):
                await simulate(generation, RunProgress(total=request.count))

        anyio.run(go)


def _measure_case(
    name: str, db: Path, limit_rpm: int | None, limit_tpm: int | None, warmup_s: float
) -> CaseResult:
    read = throughput_readings(db)
    started, ended, per_second = read.started, read.ended, read.per_second
    gateway = (read.requests, read.rate_limited, read.retries)
    gateway += (read.latency_p50_ms, read.latency_p99_ms)
    failed, succeeded, learned_rpm, learned_in_flight = (
        read.failed, read.succeeded, read.learned_rpm, read.learned_in_flight
    )  # fmt: skip
    seconds = int(ended - started) + 1
    requests = [0] * seconds
    tokens = [0] * seconds
    for second, count, token_count in per_second:
        requests[second] = count
        tokens[second] = int(token_count or 0)
    window = range(int(warmup_s), max(int(warmup_s) + 1, seconds - 1))
    span = len(window)
    rpm = sum(requests[s] for s in window) * 60.0 / span
    tpm = sum(tokens[s] for s in window) * 60.0 / span
    total_requests, rate_limited, retries, p50, p99 = gateway
    return CaseResult(
        name=name,
        limit_rpm=limit_rpm,
        limit_tpm=limit_tpm,
        measured_s=float(span),
        requests_per_min=rpm,
        tokens_per_min=tpm,
        rpm_fraction=rpm / limit_rpm if limit_rpm else None,
        tpm_fraction=tpm / limit_tpm if limit_tpm else None,
        requests=int(total_requests or 0),
        rate_limited=int(rate_limited or 0),
        rate_limited_per_1000=1000.0 * (rate_limited or 0) / max(1, total_requests or 0),
        retries=int(retries or 0),
        p50_latency_ms=p50,
        p99_latency_ms=p99,
        per_second_requests=requests,
        per_second_tokens=tokens,
        failed_conversations=int(failed or 0),
        succeeded=int(succeeded or 0),
        rate_limited_per_1000_successes=1000.0 * (rate_limited or 0) / max(1, succeeded or 0),
        learned_rpm=learned_rpm,
        learned_in_flight=learned_in_flight,
    )


def run_case(
    name: str,
    workdir: Path,
    provider: FakeProviderSettings,
    *,
    engine_rpm: int | None,
    engine_tpm: int | None,
    max_active: int,
    turns: int,
    count: int,
    duration_s: float,
    max_tokens: int,
    warmup_s: float = WARMUP_S,
) -> CaseResult:
    db = workdir / f"{name}.duckdb"
    with provider_process(provider) as base_url:
        config = _run_config(workdir / f"{name}.yaml", base_url, engine_rpm, engine_tpm, max_tokens)
        request = GenerateRequest(
            db=db, count=count, config=config, max_active=max_active, turns=turns
        )
        _timed_generate(request, duration_s)
    return _measure_case(name, db, provider.rpm, provider.tpm, warmup_s)


def unknown_limit_cases(
    settings: BenchSettings, workdir: Path, log: Callable[[str], None] = print
) -> tuple[CaseResult, ...]:
    """The engine told no limit: the provider states it only in its 429s, or nowhere."""
    latency, rpm = settings.latency_ms, settings.unknown_rpm
    little = int(rpm / 60 * latency / 1000) + 1
    cases = []
    for name, headers in (("limits_in_429_only", "on_429"), ("no_limit_headers", "never")):
        log(f"{name}: limit {rpm:,} rpm, {latency:.0f} ms, none configured")
        provider = FakeProviderSettings(
            rpm=rpm, latency_ms=latency, reply_tokens=60, limit_headers=headers
        )
        case = run_case(
            name, workdir, provider, engine_rpm=None, engine_tpm=None, max_tokens=120,
            max_active=little * 4, turns=10, count=settings.planned,
            duration_s=settings.duration_s, warmup_s=settings.warmup_s,
        )  # fmt: skip
        cases.append(case)
    return tuple(cases)


def run_unknown_limits(
    settings: BenchSettings, out: Path, log: Callable[[str], None] = print
) -> tuple[CaseResult, ...]:
    """Only the unknown-limit cases, written to `throughput_unknown_limits.json`."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rapport-bench-") as tmp:
        cases = unknown_limit_cases(settings, Path(tmp), log)
    payload = {"settings": settings, "cases": cases, "targets": TARGETS}
    (out / "throughput_unknown_limits.json").write_bytes(
        msgspec.json.format(msgspec.json.encode(payload))
    )
    return cases


def unknown_limit_rows(cases: tuple[CaseResult, ...]) -> list[tuple[str, str, str]]:
    """(figure, measured, target) rows of the unknown-limit cases."""
    rows = []
    for case in cases:
        fraction = "n/a" if case.rpm_fraction is None else f"{100 * case.rpm_fraction:.1f} %"
        rows.append(
            (
                f"{case.name}: requests/min / limit",
                f"{case.requests_per_min:,.0f} / {case.limit_rpm or 0:,} = {fraction} "
                f"(learned {case.learned_rpm or '-'} rpm, "
                f"{case.learned_in_flight or '-'} in flight)",
                "≥ 90 %",
            )
        )
        rows.append(
            (
                f"{case.name}: 429s per 1,000 successes · failed conversations",
                f"{case.rate_limited_per_1000_successes:.1f} · {case.failed_conversations}",
                "≤ 50 · 0",
            )
        )
    return rows


def engine_overhead(
    workdir: Path, conversations: int, turns: int = 20, backend: str = "null"
) -> tuple[float, float]:
    """Turns/s and conversations/s with an instant backend (by default the null one, which
    writes no text), DuckDB writes included."""
    db = workdir / f"overhead-{backend}.duckdb"
    request = GenerateRequest(
        db=db, count=conversations, turns=turns, backend=backend, max_active=OVERHEAD_ACTIVE
    )
    generation = prepare(request)
    store_plan(generation)
    started = time.perf_counter()
    summary = anyio.run(simulate, generation, RunProgress(total=conversations))
    elapsed = time.perf_counter() - started
    assert count_statuses(generation).get("complete") == conversations
    return summary.turns_written / elapsed, conversations / elapsed


def peak_rss_mb(workdir: Path, active: int, latency_ms: float = 4_000.0) -> float:
    """Peak RSS of `rapport generate` holding `active` conversations alive at once."""
    db = workdir / f"rss-{active}.duckdb"
    argv = [
        sys.executable, "-m", "rapport", "generate", "--db", str(db), "--count", str(active),
        "--turns", "2", "--max-active", str(active),
        "--backend", f"simulated:latency_ms={latency_ms:g}",
        "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(
            f"memory run failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    return peak / 1_000_000


def run_throughput(
    settings: BenchSettings, out: Path, log: Callable[[str], None] = print
) -> ThroughputReport:
    out.mkdir(parents=True, exist_ok=True)
    latency = settings.latency_ms
    with tempfile.TemporaryDirectory(prefix="rapport-bench-") as tmp:
        workdir = Path(tmp)
        little = int(settings.rpm / 60 * latency / 1000) + 1  # in flight at the limit
        rpm_provider = FakeProviderSettings(rpm=settings.rpm, latency_ms=latency, reply_tokens=60)
        rpm_engine = {"engine_rpm": settings.rpm, "engine_tpm": None, "max_tokens": 120}
        log(f"RPM-bound: limit {settings.rpm:,} rpm, {latency:.0f} ms median latency")
        rpm_case = run_case(
            "rpm_bound", workdir, rpm_provider, **rpm_engine, max_active=little * 4, turns=10,
            count=settings.planned, duration_s=settings.duration_s, warmup_s=settings.warmup_s,
        )  # fmt: skip
        log(f"TPM-bound: limit {settings.tpm:,} tpm, long conversations")
        tpm_provider = FakeProviderSettings(
            rpm=settings.rpm * 10, tpm=settings.tpm, latency_ms=latency, reply_tokens=150
        )
        tpm_case = run_case(
            "tpm_bound", workdir, tpm_provider,
            engine_rpm=settings.rpm * 10, engine_tpm=settings.tpm, max_tokens=300,
            max_active=little * 4, turns=60, count=settings.planned,
            duration_s=settings.duration_s, warmup_s=settings.warmup_s,
        )  # fmt: skip
        log("naive baseline: one conversation at a time, same provider as the RPM-bound case")
        naive = run_case(
            "naive", workdir, rpm_provider, **rpm_engine, max_active=1, turns=10,
            count=settings.naive_planned, duration_s=settings.naive_duration_s,
            warmup_s=settings.warmup_s,
        )  # fmt: skip
        unknown = unknown_limit_cases(settings, workdir, log)
        log("engine overhead: null backend, then the bare skeleton, then instant simulated")
        sizes = (settings.overhead_conversations, settings.overhead_turns)
        turns_per_s, conversations_per_s = engine_overhead(workdir, *sizes)
        skeleton = skeleton_turns_per_s(
            workdir / "skeleton.duckdb", *sizes, max_active=OVERHEAD_ACTIVE
        )
        simulated, _ = engine_overhead(workdir, *sizes, backend="simulated")
        log(f"memory: {settings.memory_small:,} and {settings.memory_large:,} active conversations")
        small = peak_rss_mb(workdir, settings.memory_small, settings.memory_latency_ms)
        large = peak_rss_mb(workdir, settings.memory_large, settings.memory_latency_ms)
    per_conversation_kb = (large - small) * 1000 / (settings.memory_large - settings.memory_small)
    report = ThroughputReport(
        settings=settings,
        rpm_bound=rpm_case,
        tpm_bound=tpm_case,
        naive=naive,
        vs_naive=rpm_case.requests_per_min / max(naive.requests_per_min, 1e-9),
        overhead_turns_per_s=turns_per_s,
        overhead_conversations_per_s=conversations_per_s,
        rss_small_mb=small,
        rss_large_mb=large,
        kb_per_active_conversation=per_conversation_kb,
        targets=TARGETS,
        unknown_limits=unknown,
        skeleton_turns_per_s=skeleton,
        vs_skeleton=turns_per_s / skeleton,
        simulated_turns_per_s=simulated,
    )
    (out / "throughput.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    plot_throughput(report, out / "throughput.png")
    return report


def plot_throughput(report: ThroughputReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=False)
    for case, colour in ((report.rpm_bound, "tab:blue"), (report.naive, "tab:gray")):
        top.plot([60 * r for r in case.per_second_requests], label=f"{case.name}", color=colour)
    top.axhline(report.rpm_bound.limit_rpm or 0, color="tab:red", linestyle="--", label="RPM limit")
    top.set_ylabel("requests/min")
    top.set_title("RPM-bound multi-turn simulation vs one conversation at a time")
    top.legend()
    tpm = report.tpm_bound
    bottom.plot([60 * t for t in tpm.per_second_tokens], label="tpm_bound", color="tab:green")
    bottom.axhline(tpm.limit_tpm or 0, color="tab:red", linestyle="--", label="TPM limit")
    bottom.set_ylabel("tokens/min")
    bottom.set_xlabel("seconds since the first turn")
    bottom.set_title("TPM-bound long conversations")
    bottom.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summary_rows(report: ThroughputReport) -> list[tuple[str, str, str]]:
    """(figure, measured, target) rows for the terminal and the README."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    rpm, tpm, naive = report.rpm_bound, report.tpm_bound, report.naive
    rpm_line = f"{rpm.requests_per_min:,.0f} / {rpm.limit_rpm:,} = {pct(rpm.rpm_fraction)}"
    tpm_line = f"{tpm.tokens_per_min:,.0f} / {tpm.limit_tpm:,} = {pct(tpm.tpm_fraction)}"
    limited = f"{rpm.rate_limited_per_1000:.2f} / {tpm.rate_limited_per_1000:.2f}"
    latency = f"{rpm.p50_latency_ms or 0:,.0f} / {rpm.p99_latency_ms or 0:,.0f} ms"
    versus = (
        f"{rpm.requests_per_min:,.0f} vs {naive.requests_per_min:,.0f} rpm = {report.vs_naive:.1f}×"
    )
    overhead = (
        f"{report.overhead_turns_per_s:,.0f} turns/s "
        f"({report.overhead_conversations_per_s:,.0f} conversations/s)"
    )
    skeleton = (
        f"{report.overhead_turns_per_s:,.0f} / {report.skeleton_turns_per_s:,.0f} turns/s "
        f"= {report.vs_skeleton:.2f}"
    )
    memory = (
        f"{report.kb_per_active_conversation:.1f} KB "
        f"({report.rss_small_mb:.0f} → {report.rss_large_mb:.0f} MB)"
    )
    return [
        ("RPM-bound: requests/min / limit", rpm_line, "≥ 98 %"),
        ("TPM-bound: tokens/min / limit", tpm_line, "≥ 95 %"),
        ("429s per 1,000 requests (RPM / TPM case)", limited, "≤ 5"),
        ("retries (RPM / TPM case)", f"{rpm.retries:,} / {tpm.retries:,}", ""),
        ("p50 / p99 turn latency, RPM case", latency, ""),
        ("vs naive (one conversation at a time)", versus, "≥ 10×"),
        ("engine overhead, null backend, DuckDB writes", overhead, "≥ 10,000 turns/s"),
        ("engine / bare skeleton (anyio tasks + DuckDB writer)", skeleton, "≥ 0.5"),
        (
            "instant simulated backend (writes its text)",
            f"{report.simulated_turns_per_s:,.0f} turns/s",
            "",
        ),
        ("RSS per active conversation (1k → 10k active)", memory, "≤ 32 KB"),
        *unknown_limit_rows(report.unknown_limits),
    ]
