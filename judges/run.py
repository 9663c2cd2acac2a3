"""`rapport judge`: judge every complete conversation that a configured judge has not fully
assessed. Re-running is idempotent (verdict key: conversation, judge, criterion) and resumes
after a kill, asking only the missing criteria."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import anyio
import msgspec
from anyio.abc import ObjectSendStream

from rapport.agents.generation import VERSION
from rapport.config import constants
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.domain import Domain
from rapport.config.loader import load_domain
from rapport.config.prices import PriceTable, load_prices
from rapport.config.run import JudgeConfig, RunConfig, api_key_env_names, load_run_config
from rapport.config.scenario import Scenario
from rapport.config.secrets import Redactor
from rapport.engine.accounting import GatewaySnapshot, snapshot_gateways
from rapport.engine.factory import build_gateway, limits_of
from rapport.engine.interrupts import Interrupted, run_interruptible
from rapport.engine.scheduler import run_bounded
from rapport.judges.judge import Judge, judge_conversation
from rapport.judges.scoring import active_criteria, score
from rapport.judges.verdicts import Verdict
from rapport.store.database import Database
from rapport.store.errors import StoreError
from rapport.store.judgements import JudgeJob, load_unjudged, plan_domains, record_pass_rule
from rapport.store.plans import (
    RunRecord,
    finish_run,
    mark_abandoned_runs,
    record_judged_count,
    save_gateway_stats,
    start_run,
)
from rapport.store.rows import AssessmentRow, JudgeFailureRow, StoreEvent, VerdictRow, utc_now
from rapport.store.run_lock import exclusive_run
from rapport.store.writer import StoreWriter

JOB_CHUNK = 500
DEFAULT_JUDGE_ID = "judge"


class JudgeRequest(msgspec.Struct, frozen=True):
    db: Path
    config: Path | None = None
    judges: tuple[str, ...] = ()  # backend specs; each becomes a judge (overrides the config)
    max_active: int | None = None


class JudgeSummary(msgspec.Struct, frozen=True):
    judged: int
    assessed: int
    failed_criteria: int
    elapsed_s: float
    judges: tuple[str, ...]
    answered_criteria: int = 0  # asked by this run and answered


def judge_configs(settings: RunConfig, specs: Sequence[str]) -> tuple[JudgeConfig, ...]:
    """Judges from `--judge` specs, else from the run config, else the embedded local model."""
    if specs:
        return tuple(
            JudgeConfig(id=spec.split("@")[0], backend=parse_backend_spec(spec, "--judge"))
            for spec in specs
        )
    if settings.judges:
        return settings.judges
    return (JudgeConfig(id=DEFAULT_JUDGE_ID),)


def build_judges(
    configs: Sequence[JudgeConfig], domain: Domain, environ: Mapping[str, str], config_file: str
) -> list[Judge]:
    judges = []
    for index, config in enumerate(configs):
        if config.backend.provider == "llamacpp" and config.context_tokens is None:
            config = msgspec.structs.replace(config, context_tokens=config.backend.n_ctx)
        gateway = build_gateway(
            config.backend, limits_of(config.backend), domain, environ, config_file,
            f"judges[{index}].backend",
        )  # fmt: skip
        judges.append(Judge(config, gateway))
    ids = [judge.id for judge in judges]
    if len(set(ids)) != len(ids):
        raise StoreError(f"{config_file}: judges: ids must be distinct, got {', '.join(ids)}")
    return judges


async def assess(judge: Judge, domain: Domain, job: JudgeJob) -> StoreEvent:
    """Ask this judge the criteria it has not answered; score once all are answered."""
    exchanges = sum(role == "assistant" for role, _ in job.messages)
    wanted = {c.id for c in active_criteria(domain.rubric, exchanges)}
    missing = wanted - set(job.existing)
    new = await judge_conversation(judge, domain, job.scenario, job.messages, only=missing)
    return assessment_event(judge, domain, job, new, exchanges)


def assessment_event(
    judge: Judge, domain: Domain, job: JudgeJob, new: Sequence[Verdict], exchanges: int
) -> StoreEvent:
    now = utc_now()
    cid = job.scenario.scenario_id
    model = judge.gateway.label
    rows = tuple(
        VerdictRow(cid, judge.id, v.criterion_id, v.answer, v.reasoning, model, now)
        for v in new
        if v.answer is not None
    )
    failures = tuple(
        JudgeFailureRow(cid, judge.id, v.criterion_id, v.error or "unknown", now)
        for v in new
        if v.answer is None
    )
    answers = {c: Verdict(c, a, r) for c, (a, r) in job.existing.items()}  # type: ignore[arg-type]
    answers |= {v.criterion_id: v for v in new if v.answer is not None}
    assessment = None
    if not failures:
        result = score(domain.rubric, answers, exchanges)
        assessment = AssessmentRow(
            conversation_id=cid,
            judge_id=judge.id,
            score=result.score,
            passed=result.passed,
            safety_failed=result.safety_failed,
            pass_threshold=domain.rubric.pass_threshold,
            category_scores=msgspec.json.encode(result.category_scores).decode(),
            failed_gates=list(result.failed_gates),
            created_at=now,
        )
    return StoreEvent(verdicts=rows, judge_failures=failures, assessment=assessment)


async def judge_pending(
    database: Database,
    judges: Sequence[Judge],
    domains: Mapping[str, Domain],
    sink: ObjectSendStream[StoreEvent],
    max_active: int,
    plan_ids: Sequence[str] | None = None,
    below_index: int | None = None,
) -> tuple[int, int]:
    """Judge everything pending for every judge (in the corpus, or in the given plans, only
    scenarios below `below_index` if given); returns (jobs, failed criteria, answered
    criteria)."""
    counts = [0, 0, 0]

    async def jobs() -> AsyncIterator[tuple[Judge, JudgeJob]]:
        for judge in judges:
            after = ""
            while True:
                chunk = await database.run(
                    lambda conn, after=after, judge=judge: load_unjudged(
                        conn, judge.id, after, JOB_CHUNK, plan_ids, below_index
                    )
                )
                if not chunk:
                    break
                for job in chunk:
                    yield judge, job
                after = chunk[-1].scenario.scenario_id

    async def handle(item: tuple[Judge, JudgeJob]) -> None:
        judge, job = item
        event = await assess(judge, domains[job.scenario.plan_id], job)
        counts[0] += 1
        counts[1] += len(event.judge_failures)
        counts[2] += len(event.verdicts)
        await sink.send(event)

    await run_bounded(jobs(), judging_concurrency(judges, max_active), handle)
    return counts[0], counts[1], counts[2]


def judging_concurrency(judges: Sequence[Judge], max_active: int) -> int:
    """Conversations judged at once: `max_active`, unless every judge sits behind an in-flight
    cap (a local model), whose few slots a handful of conversations keep busy — so each one
    finishes, and is stored, as soon as it can."""
    caps = [judge.gateway.limits.max_in_flight for judge in judges]
    if not caps or None in caps:
        return max_active
    slots = sum(cap for cap in caps if cap is not None)
    return max(1, min(max_active, slots * constants.JUDGE_CONVERSATIONS_PER_SLOT))


def judge_corpus(request: JudgeRequest, environ: Mapping[str, str] | None = None) -> JudgeSummary:
    """The whole command: validate, then judge what is pending, streaming verdicts to DuckDB."""
    settings = load_run_config(request.config)
    configs = judge_configs(settings, request.judges)  # a bad spec is refused before any write
    if not request.db.exists():
        raise StoreError(f"{request.db}: no such database (run `rapport generate` first)")
    database = Database(request.db)
    database.initialise()
    domains = database.run_sync(plan_domains)
    # The judges' own backends need a domain (the simulated one writes from it): the corpus's,
    # or the configured one when nothing has been planned yet.
    domain = next(iter(domains.values()), None) or load_domain(
        Path(settings.domain) if settings.domain else None
    )
    environ = environ if environ is not None else dict(os.environ)
    judges = build_judges(configs, domain, environ, str(request.config or "run config"))
    redactor = Redactor.from_environ(
        environ, api_key_env_names(settings, *(config.backend for config in configs))
    )
    max_active = request.max_active or settings.max_active
    prices = load_prices(settings.prices)
    started = time.perf_counter()
    with exclusive_run(request.db):
        database.run_sync(lambda conn: record_pass_rule(conn, settings.pass_rule))
        database.run_sync(mark_abandoned_runs)
        run_id = uuid.uuid4().hex[:12]
        record = judge_run_record(run_id, judges, domains, settings)
        database.run_sync(lambda conn: start_run(conn, record, redactor))

        async def record_gateways() -> None:
            snapshots = judge_gateway_snapshots(run_id, judges, prices)
            await database.run(lambda conn: save_gateway_stats(conn, snapshots, redactor))

        async def record_gateways_periodically() -> None:
            while True:
                await anyio.sleep(constants.GATEWAY_STATS_INTERVAL_S)
                await record_gateways()

        async def go() -> tuple[int, int, int]:
            writer = StoreWriter(
                database,
                flush_rows=settings.store.flush_rows,
                flush_interval_s=settings.store.flush_interval_s,
                redactor=redactor,
            )
            send, receive = anyio.create_memory_object_stream[StoreEvent](
                constants.STORE_QUEUE_EVENTS
            )
            status = "interrupted"
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(writer.run, receive)
                    async with send, anyio.create_task_group() as side_tasks:
                        side_tasks.start_soon(record_gateways_periodically)
                        counts = await judge_pending(database, judges, domains, send, max_active)
                        side_tasks.cancel_scope.cancel()
                status = "finished"
                return counts
            finally:
                with anyio.CancelScope(shield=True):
                    await record_gateways()
                    await database.run(lambda conn: finish_run(conn, run_id, status, utc_now()))
                    await close_judges(judges)

        try:
            judged, failed, answered = run_interruptible(go)
        except Interrupted as stop:
            stop.progress = f"{stored_assessments(database):,} assessments stored"
            raise
        database.run_sync(lambda conn: record_judged_count(conn, run_id, judged))
    assessed = stored_assessments(database)
    return JudgeSummary(
        judged=judged,
        assessed=int(assessed),
        failed_criteria=failed,
        elapsed_s=time.perf_counter() - started,
        judges=tuple(f"{j.id} ({j.gateway.label})" for j in judges),
        answered_criteria=answered,
    )


def stored_assessments(database: Database) -> int:
    """Assessments of corpus conversations in the database, by every judge."""
    return int(
        database.run_sync(
            lambda conn: conn.execute(
                "SELECT count(*) FROM assessments "
                "WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)"
            ).fetchone()[0]
        )
    )


def judge_run_record(
    run_id: str, judges: Sequence[Judge], domains: Mapping[str, Domain], settings: RunConfig
) -> RunRecord:
    """A `runs` row for `rapport judge`, so its requests, failures and cost are in SQL like a
    generation run's. It spans every corpus plan (their ids, comma-separated); the judges'
    backends stand in the assistant column; `count` becomes the conversations judged."""
    return RunRecord(
        run_id=run_id,
        plan_id=",".join(sorted(domains)),
        command="judge",
        count=0,
        status="running",
        started_at=utc_now(),
        user_backend="",
        assistant_backend=", ".join(f"{j.id} ({j.gateway.label})" for j in judges),
        settings=msgspec.json.encode(settings).decode(),
        rapport_version=VERSION,
    )


def judge_gateway_snapshots(
    run_id: str, judges: Sequence[Judge], prices: PriceTable
) -> list[GatewaySnapshot]:
    """One `gateway_stats` row per judge's gateway (roles: the judge id); judges on the same
    endpoint are told apart by their id."""
    snapshots = snapshot_gateways(
        run_id, {f"judge:{j.id}": j.gateway for j in judges}, prices, utc_now()
    )
    names = [s.gateway for s in snapshots]
    return [
        msgspec.structs.replace(s, gateway=f"{s.gateway} ({','.join(s.roles)})")
        if names.count(s.gateway) > 1
        else s
        for s in snapshots
    ]


def judge_as_completed(
    judges: Sequence[Judge], domain: Domain
) -> Callable[[Scenario, Sequence[tuple[str, str]], ObjectSendStream[StoreEvent]], Awaitable[None]]:
    """For `rapport generate` with `judges:`: judge each conversation as soon as it completes,
    every judge at once, each through its own gateway (so each stays at its own limit)."""

    async def judge_now(
        scenario: Scenario,
        transcript: Sequence[tuple[str, str]],
        sink: ObjectSendStream[StoreEvent],
    ) -> None:
        job = JudgeJob(scenario, tuple(transcript), {})

        async def one(judge: Judge) -> None:
            await sink.send(await assess(judge, domain, job))

        async with anyio.create_task_group() as group:
            for judge in judges:
                group.start_soon(one, judge)

    return judge_now


async def close_judges(judges: Sequence[Judge]) -> None:
    for judge in judges:
        await judge.gateway.aclose()
