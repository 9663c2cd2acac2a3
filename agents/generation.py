"""`rapport generate`: plan (if needed), then simulate every unfinished conversation."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import msgspec

from rapport.agents.conversation import AfterComplete, ConversationContext, run_conversation
from rapport.agents.prompts import assistant_prompt
from rapport.config import constants
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.domain import Domain
from rapport.config.loader import load_domain
from rapport.config.prices import load_prices
from rapport.config.run import Backends, RunConfig, api_key_env_names, load_run_config
from rapport.config.secrets import Redactor
from rapport.engine.accounting import snapshot_gateways
from rapport.engine.errors import ProviderUnusable
from rapport.engine.factory import build_gateways
from rapport.engine.gateway import Gateway
from rapport.engine.interrupts import Interrupted, run_interruptible
from rapport.engine.plan import plan_id_for, sample_scenarios
from rapport.engine.progress import RunProgress
from rapport.engine.scheduler import run_bounded
from rapport.store.database import Database
from rapport.store.plans import (
    PlanRecord,
    RunRecord,
    StopReason,
    UnfinishedConversation,
    finish_run,
    load_unfinished,
    mark_abandoned_runs,
    release_unfinished,
    save_gateway_stats,
    save_plan,
    save_scenarios,
    start_run,
    stored_scenario_count,
)
from rapport.store.rows import StoreEvent, utc_now
from rapport.store.run_lock import exclusive_run
from rapport.store.writer import StoreWriter

VERSION = "0.1.0"


class GenerateRequest(msgspec.Struct, frozen=True):
    """The command line's arguments; None means "from the run config, else the default"."""

    db: Path
    count: int
    seed: int | None = None
    domain: Path | None = None
    config: Path | None = None
    max_active: int | None = None
    turns: int | None = None
    backend: str | None = None  # a backend spec for both roles (see config.backend_spec)
    user_backend: str | None = None
    assistant_backend: str | None = None


class RunSummary(msgspec.Struct, frozen=True):
    run_id: str
    plan_id: str
    count: int
    complete: int
    failed: int
    pending: int
    turns_written: int
    elapsed_s: float
    user_backend: str
    assistant_backend: str


class Generation(msgspec.Struct, frozen=True):
    """A prepared run: everything validated, nothing called yet."""

    request: GenerateRequest
    settings: RunConfig
    domain: Domain
    gateways: dict[str, Gateway]
    database: Database
    plan_id: str
    redactor: Redactor  # built from this run's environment: every text stored or shown


def prepare(request: GenerateRequest, environ: dict[str, str] | None = None) -> Generation:
    """Validate config, keys and database before any work starts (errors are one line)."""
    settings = load_run_config(request.config)
    overrides = {
        "seed": request.seed,
        "max_active": request.max_active,
        "turns": request.turns,
        "domain": str(request.domain) if request.domain is not None else None,
    }
    settings = msgspec.structs.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    settings = msgspec.structs.replace(settings, backends=_backends_from_flags(request, settings))
    domain = load_domain(Path(settings.domain) if settings.domain else None)
    environ = environ if environ is not None else dict(os.environ)
    gateways = build_gateways(
        settings.backends, domain, environ, str(request.config or "run config")
    )
    database = Database(request.db)
    database.initialise()
    return Generation(
        request=request,
        settings=settings,
        domain=domain,
        gateways=gateways,
        database=database,
        plan_id=plan_id_for(domain, settings.seed, settings.turns),
        redactor=Redactor.from_environ(environ, api_key_env_names(settings)),
    )


def _backends_from_flags(request: GenerateRequest, settings: RunConfig) -> Backends:
    """--backend sets both roles; --user-backend / --assistant-backend set one (and win)."""
    backends = settings.backends
    per_role = {
        "user_sim": ("--user-backend", request.user_backend),
        "assistant": ("--assistant-backend", request.assistant_backend),
    }
    for role, (flag, own_spec) in per_role.items():
        spec, shown_as = (own_spec, flag) if own_spec else (request.backend, "--backend")
        if spec:
            backends = msgspec.structs.replace(
                backends, **{role: parse_backend_spec(spec, shown_as)}
            )
    return backends


def store_plan(generation: Generation) -> None:
    """Sample and store every scenario up to `count` that is not stored yet, chunk by chunk."""
    domain, settings, plan_id = generation.domain, generation.settings, generation.plan_id
    now = utc_now()
    plan = PlanRecord(
        plan_id=plan_id,
        domain=domain.name,
        domain_fingerprint=domain.fingerprint(),
        seed=settings.seed,
        turns=settings.turns,
        domain_snapshot=msgspec.json.encode(domain).decode(),
        created_at=now,
    )
    generation.database.run_sync(lambda conn: save_plan(conn, plan))
    chunk = constants.PLAN_CHUNK_SCENARIOS
    for start in range(0, generation.request.count, chunk):
        stop = min(start + chunk, generation.request.count)

        def save_chunk(conn, start: int = start, stop: int = stop) -> None:
            if stored_scenario_count(conn, plan_id, start, stop) == stop - start:
                return
            scenarios = list(
                sample_scenarios(domain, plan_id, settings.seed, start, stop, settings.turns)
            )
            save_scenarios(conn, scenarios, now)

        generation.database.run_sync(save_chunk)


async def unfinished_jobs(generation: Generation) -> AsyncIterator[UnfinishedConversation]:
    """Stream the conversations still to do, one chunk of the plan at a time."""
    chunk = constants.PLAN_CHUNK_SCENARIOS
    include_failed = generation.settings.retry_failed
    for start in range(0, generation.request.count, chunk):
        stop = min(start + chunk, generation.request.count)
        jobs = await generation.database.run(
            lambda conn, start=start, stop=stop: load_unfinished(
                conn, generation.plan_id, start, stop, include_failed=include_failed
            )
        )
        for job in jobs:
            yield job


def count_statuses(generation: Generation) -> dict[str, int]:
    rows = generation.database.run_sync(
        lambda conn: conn.execute(
            "SELECT status, count(*) FROM conversations "
            "WHERE plan_id = ? AND scenario_index < ? GROUP BY status",
            [generation.plan_id, generation.request.count],
        ).fetchall()
    )
    return {status: int(n) for status, n in rows}


async def simulate(
    generation: Generation,
    progress: RunProgress,
    display: Callable[[RunProgress], Awaitable[None]] | None = None,
    after_complete: AfterComplete | None = None,
) -> RunSummary:
    """Run every unfinished conversation of the plan through the actors, streaming to DuckDB."""
    settings = generation.settings
    run_id = uuid.uuid4().hex[:12]
    labels = {role: gateway.label for role, gateway in generation.gateways.items()}
    record = RunRecord(
        run_id=run_id,
        plan_id=generation.plan_id,
        command="generate",
        count=generation.request.count,
        status="running",
        started_at=utc_now(),
        user_backend=labels["user_sim"],
        assistant_backend=labels["assistant"],
        settings=msgspec.json.encode(settings).decode(),
        rapport_version=VERSION,
    )
    await generation.database.run(lambda conn: start_run(conn, record, generation.redactor))
    generation.database.on_wait = progress.note_store_wait  # a reader holding the file: shown
    writer = StoreWriter(
        generation.database,
        flush_rows=settings.store.flush_rows,
        flush_interval_s=settings.store.flush_interval_s,
        redactor=generation.redactor,
    )
    send, receive = anyio.create_memory_object_stream[StoreEvent](constants.STORE_QUEUE_EVENTS)
    context = ConversationContext(
        domain=generation.domain,
        run_id=run_id,
        gateways=generation.gateways,
        backends=settings.backends,
        sink=send,
        progress=progress,
        assistant_system=assistant_prompt(generation.domain),
        after_complete=after_complete,
    )
    prices = load_prices(settings.prices)

    async def record_gateways() -> None:
        snapshots = snapshot_gateways(run_id, generation.gateways, prices, utc_now())
        await generation.database.run(
            lambda conn: save_gateway_stats(conn, snapshots, generation.redactor)
        )

    async def record_gateways_periodically() -> None:
        while True:
            await anyio.sleep(constants.GATEWAY_STATS_INTERVAL_S)
            await record_gateways()

    status = "interrupted"
    stopped_by: StopReason | None = None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run, receive)
            async with send, anyio.create_task_group() as side_tasks:
                side_tasks.start_soon(record_gateways_periodically)
                if display is not None:
                    side_tasks.start_soon(display, progress)
                await _simulate_all(generation, context)
                side_tasks.cancel_scope.cancel()
        status = "finished"
    except* ProviderUnusable as stop:
        stopped_by = stop_reason(stop)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await record_gateways()
            await generation.database.run(
                lambda conn: release_unfinished(conn, run_id, stopped_by, utc_now())
            )
            await generation.database.run(lambda conn: finish_run(conn, run_id, status, utc_now()))
            for gateway in {id(g): g for g in generation.gateways.values()}.values():
                await gateway.aclose()
    counts = count_statuses(generation)
    return RunSummary(
        run_id=run_id,
        plan_id=generation.plan_id,
        count=generation.request.count,
        complete=counts.get("complete", 0),
        failed=counts.get("failed", 0),
        pending=sum(n for s, n in counts.items() if s not in ("complete", "failed")),
        turns_written=progress.turns,
        elapsed_s=(utc_now() - record.started_at).total_seconds(),
        user_backend=labels["user_sim"],
        assistant_backend=labels["assistant"],
    )


def stop_reason(group: BaseExceptionGroup[ProviderUnusable]) -> StopReason:
    """The first provider failure that stopped a run, to store with what it interrupted."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return StopReason(getattr(leaf, "kind", ProviderUnusable.kind), str(leaf))


async def _simulate_all(generation: Generation, context: ConversationContext) -> None:
    await run_bounded(
        unfinished_jobs(generation),
        generation.settings.max_active,
        lambda job: run_conversation(job, context),
    )


def generate(
    request: GenerateRequest,
    *,
    environ: dict[str, str] | None = None,
    display: Callable[[Generation], Callable[[RunProgress], Awaitable[None]] | None] | None = None,
    after_complete: Callable[[Generation], AfterComplete | None] | None = None,
    close: Callable[[], Awaitable[None]] | None = None,
) -> RunSummary:
    """The whole command: validate, store the plan, simulate. Safe to re-run: it resumes.

    `after_complete` builds (from the validated run) what to do as each conversation
    completes, e.g. judge it; it is built before any model call, so its errors come first.
    `close` releases what it opened, in the simulation's event loop: an HTTP client's
    connections belong to the loop that opened them and cannot be closed from another."""
    generation = prepare(request, environ)
    hook = after_complete(generation) if after_complete else None
    with exclusive_run(request.db):
        generation.database.run_sync(mark_abandoned_runs)
        store_plan(generation)
        progress = RunProgress(total=request.count)
        progress.already_complete = count_statuses(generation).get("complete", 0)

        async def simulate_then_close(*args) -> RunSummary:
            try:
                return await simulate(*args)
            finally:
                if close is not None:
                    with anyio.CancelScope(shield=True):
                        await close()

        try:
            return run_interruptible(
                simulate_then_close,
                generation,
                progress,
                display(generation) if display else None,
                hook,
            )
        except Interrupted as stop:
            complete = count_statuses(generation).get("complete", 0)
            stop.progress = f"{complete:,} of {request.count:,} conversations complete"
            raise
