"""`rapport generate`: plan (if needed), then simulate every unfinished conversation, judging
each as it completes when judges are configured — all in one run session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Literal

import duckdb
import msgspec

from rapport.agents.conversation import ConversationContext, run_conversation
from rapport.agents.prompts import assistant_prompt
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.constants import MAX_COUNT
from rapport.config.domain import Domain
from rapport.config.errors import RapportError
from rapport.config.loader import load_domain
from rapport.config.run import Backends, JudgeConfig, RunConfig
from rapport.config.shards import WHOLE_PLAN, Shard, shard_settings
from rapport.config.sides import judged_sides
from rapport.engine.budget import within_budget
from rapport.engine.plan import plan_id_for, sample_scenario
from rapport.engine.progress import JudgingProgress, RunProgress
from rapport.engine.scheduler import run_bounded
from rapport.engine.strata import quotas, shard_quotas, stratum_weights
from rapport.judges.panel import judge_configs
from rapport.stages.estimate import estimate_run, record_estimate
from rapport.stages.jobs import plan_chunks, unfinished_conversations
from rapport.stages.judge_pool import JudgePool
from rapport.stages.preparation import (
    PreparedRun,
    checked_request,
    environment,
    prepare_run,
    run_settings,
)
from rapport.stages.progress import Progress
from rapport.stages.session import RunSession, new_run_id, run_record
from rapport.stages.shell import run_session, stage_shell
from rapport.stages.until_passing import (
    PassingSummary,
    PassingTarget,
    new_conversation_opener,
    passing_summary,
    short_of_quota,
)
from rapport.store.judgements import corpus_assessment_count, plan_domains, record_pass_rule
from rapport.store.passing import stratum_counts
from rapport.store.plans import (
    PlanRecord,
    UnfinishedConversation,
    save_plan,
    save_scenarios,
    status_counts_below,
    stored_scenario_count,
)
from rapport.store.rows import utc_now
from rapport.store.shards import save_shard
from rapport.store.spend import plan_spend

# off: no judging; configured: the config's `judges:` if any; always: `judges` specs, else the
# config's, else the embedded local judge.
Judging = Literal["off", "configured", "always"]
# Plays a run's jobs (which plan, conversation) in its context; None: in this process. A Ray
# cluster's player (rapport.cluster.driver) hands them to worker actors instead.
Play = Callable[
    [ConversationContext, AsyncIterator[tuple[int, UnfinishedConversation]]], Awaitable[None]
]


class GenerateRequest(msgspec.Struct, frozen=True):
    """The command line's arguments; None means "from the run config, else the default"."""

    db: Path
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]  # checked as --count is
    seed: int | None = None
    domain: Path | None = None
    config: Path | None = None
    max_active: int | None = None
    turns: int | None = None
    backend: str | None = None  # a backend spec for both roles (see config.backend_spec)
    user_backend: str | None = None
    assistant_backend: str | None = None
    judging: Judging = "off"
    judges: tuple[str, ...] = ()  # judges' backend specs (with judging="always")
    max_cost: float | None = None  # US dollars, over every run of the plan (budget_usd)
    shard: Shard | None = None  # play only the plan's scenarios with index % N == K
    # play and judge until this many conversations pass, in the plan's mix (needs judges);
    # `count` is then the most scenarios of the plan it may draw
    until_passing: int | None = None


class JudgingSummary(msgspec.Struct, frozen=True):
    judged: int  # conversation-judge pairs judged by this run
    assessed: int  # assessments of corpus conversations now stored, by every judge
    failed_criteria: int
    answered_criteria: int
    judges: tuple[str, ...]


class RunSummary(msgspec.Struct, frozen=True):
    """What a generation run did (`rapport generate`, `Corpus.generate`): the plan, its
    conversations complete, failed and pending, the turns written, and, when it judged or
    played until a target passed, those figures too."""

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
    judging: JudgingSummary | None = None
    shard: str | None = None  # K/N when the run played one shard of the plan
    passing: PassingSummary | None = None  # --until-passing: the target, per stratum


class Generation(PreparedRun, frozen=True, kw_only=True):
    """A prepared run: everything validated, nothing called yet."""

    request: GenerateRequest
    domain: Domain
    plan_id: str
    # --until-passing: each stratum's share of the plan, passing conversations wanted in each
    weights: dict[str, float] = msgspec.field(default_factory=dict)
    quotas: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def until_passing(self) -> bool:
        return self.request.until_passing is not None

    @property
    def shard(self) -> Shard:
        return self.request.shard or WHOLE_PLAN

    @property
    def shard_label(self) -> str | None:
        return self.request.shard.label if self.request.shard else None

    @property
    def planned(self) -> int:
        """The conversations this run owns: the plan's `count`, or this shard's share of it."""
        return self.shard.size(0, self.request.count)


def generate_settings(request: GenerateRequest) -> RunConfig:
    """The run config with the command line's overrides: the one place they are merged."""
    settings = run_settings(
        checked_request(request).config,
        {
            "--seed": ("seed", request.seed),
            "--max-active": ("max_active", request.max_active),
            "--turns": ("turns", request.turns),
            "--domain": ("domain", str(request.domain) if request.domain is not None else None),
            "--max-cost": ("budget_usd", request.max_cost),
        },
    )
    settings = msgspec.structs.replace(settings, backends=_backends_from_flags(request, settings))
    return shard_settings(settings, request.shard) if request.shard else settings


def prepare(request: GenerateRequest, environ: dict[str, str] | None = None) -> Generation:
    """Validate config, keys and database before any work starts (errors are one line)."""
    settings = generate_settings(request)
    if request.until_passing is not None and request.until_passing < 1:
        raise RapportError(
            f"--until-passing {request.until_passing}: the target must be at least 1"
        )
    domain = load_domain(Path(settings.domain) if settings.domain else None)
    judge_settings: tuple[JudgeConfig, ...] = ()
    if request.judging == "always":
        judge_settings = judge_configs(settings, request.judges)
    elif request.judging == "configured":  # `batch: true` judges wait for `rapport judge`
        judge_settings = tuple(judge for judge in settings.judges if not judge.batch)
    if request.until_passing is not None and not judge_settings:
        raise RapportError(
            "--until-passing needs judges to tell which conversations pass: add `judges:` "
            "(not batch) to the run config or pass --judge SPEC"
        )
    plan_id = plan_id_for(domain, settings.seed, settings.turns)
    prepared = prepare_run(
        settings,
        request.db,
        environ=environment(environ),
        shown=str(request.config or "run config"),
        roles=msgspec.structs.asdict(settings.backends),
        judges=judge_settings,
        earlier_spend=lambda _: lambda conn: plan_spend(conn, plan_id, "generate"),
    )  # what earlier runs of this plan spent counts against its budget
    weights: dict[str, float] = {}
    wanted: dict[str, int] = {}
    if request.until_passing is not None:  # the whole target split, then this shard's part
        weights = stratum_weights(domain)
        wanted = shard_quotas(quotas(weights, request.until_passing), request.shard or WHOLE_PLAN)
    return Generation(
        **msgspec.structs.asdict(prepared),
        request=request,
        domain=domain,
        plan_id=plan_id,
        weights=weights,
        quotas=wanted,
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
    """Sample and store every scenario up to `count` (of this shard) that is not stored yet,
    chunk by chunk. With --until-passing only the plan's row: the plan grows chunk by chunk
    as the run draws (see `store_plan_chunk`)."""
    domain, settings, plan_id = generation.domain, generation.settings, generation.plan_id
    shard = generation.shard
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
    if generation.request.shard is not None:
        count = generation.request.count
        generation.database.run_sync(lambda conn: save_shard(conn, plan_id, shard, count, now))
    if generation.until_passing:
        return
    for start, stop in plan_chunks(generation.request.count):
        generation.database.run_sync(store_plan_chunk(generation, start, stop))


def store_plan_chunk(
    generation: Generation, start: int, stop: int, *, conversations: bool = True
) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """Store the scenarios of plan indices `[start, stop)` (of this shard) not stored yet, with
    their pending conversations unless told not to (--until-passing opens those it admits)."""
    domain, settings, plan_id = generation.domain, generation.settings, generation.plan_id
    shard = generation.shard

    def save_chunk(conn: duckdb.DuckDBPyConnection) -> None:
        if stored_scenario_count(conn, plan_id, start, stop, shard) == shard.size(start, stop):
            return
        scenarios = [
            sample_scenario(domain, plan_id, settings.seed, index, settings.turns)
            for index in shard.indices(start, stop)
        ]
        save_scenarios(conn, scenarios, utc_now(), conversations=conversations)

    return save_chunk


def count_statuses(generation: Generation) -> dict[str, int]:
    return generation.database.run_sync(
        lambda conn: status_counts_below(
            conn, generation.plan_id, generation.request.count, generation.shard
        )
    )


async def simulate(
    generation: Generation,
    progress: RunProgress,
    display: Progress | None = None,
    play: Play | None = None,
) -> RunSummary:
    """Run every unfinished conversation of the plan through the actors, streaming to DuckDB;
    with judges, judge each as it completes (and what earlier runs left unjudged)."""
    settings, database = generation.settings, generation.database
    labels = {role: gateway.label for role, gateway in generation.gateways.items()}
    judges = generation.judges
    estimate = estimate_run(
        settings,
        generation.request.count,
        reader=database.run_sync,
        domain=generation.domain,
        shard=generation.shard,
    )  # before the run's clock starts: what it would take, for `stats` to compare
    record = run_record(
        new_run_id(),
        "generate",
        generation.plan_id,
        generation.request.count,
        labels["user_sim"],
        labels["assistant"],
        settings,
        generation.shard_label,
    )
    database.run_sync(lambda conn: record_estimate(conn, record.run_id, estimate))
    domains = database.run_sync(plan_domains) if judges else {}
    pools: list[JudgePool] = []

    async def work(session: RunSession) -> None:
        if judges:
            progress.judging = JudgingProgress()
        pool = JudgePool(judges, domains, session.sink, settings.max_active, progress.judging)
        pools.append(pool)
        context = ConversationContext(
            domain=generation.domain,
            run_id=session.run_id,
            gateways=generation.gateways,
            backends=settings.backends,
            sink=session.sink,
            progress=progress,
            assistant_system=assistant_prompt(generation.domain),
            after_complete=pool.submit if judges else None,
            cache=settings.cache,
        )
        if generation.until_passing:
            target = passing_target(generation, pool.judge_failed)
            progress.passing = target.progress
            jobs = target.jobs()
        else:
            jobs = unfinished_conversations(
                database, [generation.plan_id], generation.request.count,
                include_failed=settings.retry_failed, shard=generation.shard,
            )  # fmt: skip
        async with aclosing(jobs), pool.running(database, exclude_run=session.run_id):
            if play is not None:  # e.g. on Ray workers (rapport.cluster)
                await play(context, jobs)
                return
            await run_bounded(
                within_budget(jobs, generation.budget),
                settings.max_active,
                lambda job: run_conversation(job[1], context),
            )

    def standing() -> str:  # where the budget stopped it: the conversations, or the target
        if generation.until_passing:
            return short_of_quota(read_passing(generation))
        return completed(generation)

    if judges:
        database.run_sync(lambda conn: record_pass_rule(conn, settings.pass_rule))
    await run_session(generation, record, progress, work, standing=standing, display=display)
    statuses = count_statuses(generation)
    passing = read_passing(generation) if generation.until_passing else None
    judging = None
    if judges:
        counts = pools[0].counts
        judging = JudgingSummary(
            judged=counts.judged,
            assessed=database.run_sync(corpus_assessment_count),
            failed_criteria=counts.failed,
            answered_criteria=counts.answered,
            judges=tuple(f"{j.id} ({j.gateway.label})" for j in judges),
        )
    return RunSummary(
        run_id=record.run_id,
        plan_id=generation.plan_id,
        count=generation.planned,
        complete=statuses.get("complete", 0),
        failed=statuses.get("failed", 0),
        pending=sum(n for s, n in statuses.items() if s not in ("complete", "failed")),
        turns_written=progress.turns,
        elapsed_s=(utc_now() - record.started_at).total_seconds(),
        user_backend=labels["user_sim"],
        assistant_backend=labels["assistant"],
        judging=judging,
        shard=generation.shard_label,
        passing=passing,
    )


def completed(generation: Generation) -> str:
    """E.g. "40 of 51 conversations complete": where a stopped run stands."""
    complete = count_statuses(generation).get("complete", 0)
    return f"{complete:,} of {generation.planned:,} conversations complete"


def passing_target(generation: Generation, judge_failed: set[str]) -> PassingTarget:
    """The admission of an --until-passing run (see stages.until_passing)."""
    database = generation.database

    async def store_chunk(start: int, stop: int) -> None:
        await database.run(store_plan_chunk(generation, start, stop, conversations=False))

    return PassingTarget(
        database,
        generation.plan_id,
        generation.shard,
        generation.weights,
        generation.quotas,
        generation.request.count,
        len(generation.judges),
        both_sides=both_sides(generation),
        judge_failed=judge_failed,
        store_chunk=store_chunk,
        open_conversation=new_conversation_opener(database),
        include_failed=generation.settings.retry_failed,
        guard=generation.budget,
    )


def both_sides(generation: Generation) -> bool:
    """Whether a conversation passes only once its user side is judged too (the domain has a
    simulator rubric, and the run's judge pool judges it)."""
    return "user" in judged_sides(generation.domain)


def read_passing(generation: Generation) -> PassingSummary:
    """Where the target stands, from the store (the run's writer has drained)."""
    count, shard = generation.request.count, generation.shard
    sides = both_sides(generation)
    counts = generation.database.run_sync(
        lambda conn: stratum_counts(conn, generation.plan_id, count, shard, both_sides=sides)
    )
    return passing_summary(counts, generation.weights, generation.quotas, count)


def generate(
    request: GenerateRequest,
    *,
    environ: dict[str, str] | None = None,
    display: Progress | None = None,
    play: Callable[[Generation], Play] | None = None,
) -> RunSummary:
    """The whole command: validate, store the plan, simulate (and judge), `display` showing it
    live. Safe to re-run: it resumes."""
    generation = prepare(request, environ)
    with stage_shell(generation, request.db, lambda: completed(generation)) as run:
        store_plan(generation)
        progress = RunProgress(total=generation.planned)
        progress.already_complete = count_statuses(generation).get("complete", 0)
        return run(simulate, generation, progress, display, play(generation) if play else None)
