"""`rapport eval`: play the held-out scenarios with each side as the assistant (both sides at
once, through their gateways, against one user simulator), judge every conversation with the
same judges, and compare. Everything streams into DuckDB; a re-run resumes."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import anyio
import msgspec

from rapport.agents.conversation import ConversationContext, run_conversation
from rapport.agents.generation import VERSION, stop_reason
from rapport.agents.prompts import assistant_prompt
from rapport.config import constants
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.domain import Domain
from rapport.config.loader import load_domain
from rapport.config.prices import load_prices
from rapport.config.run import (
    BackendConfig,
    Backends,
    RunConfig,
    api_key_env_names,
    load_run_config,
)
from rapport.config.secrets import Redactor
from rapport.engine.accounting import snapshot_gateways
from rapport.engine.errors import ProviderUnusable
from rapport.engine.factory import build_role_gateways, gateway_key
from rapport.engine.gateway import Gateway
from rapport.engine.interrupts import Interrupted, run_interruptible
from rapport.engine.progress import RunProgress
from rapport.engine.scheduler import run_bounded
from rapport.evaluation.families import family_of
from rapport.evaluation.held_out import (
    eval_id_for,
    held_out_plan_id,
    held_out_scenarios,
    side_plan_id,
    side_scenario,
)
from rapport.evaluation.summary import (
    EvalSummary,
    category_deltas,
    combine_judges,
    compare_sides,
    criterion_deltas,
    example,
    honesty_warnings,
    most_different,
    side_figures,
)
from rapport.judges.judge import Judge
from rapport.judges.run import (
    build_judges,
    close_judges,
    judge_as_completed,
    judge_configs,
    judge_pending,
)
from rapport.store.database import Database
from rapport.store.evaluations import (
    SIDES,
    EvalConversation,
    EvalRunRecord,
    criterion_answers,
    judged_sides,
    save_eval_conversations,
    save_eval_run,
    save_eval_summary,
    side_transcripts,
    status_counts,
)
from rapport.store.judgements import plan_domains
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
)
from rapport.store.rows import StoreEvent, utc_now
from rapport.store.run_lock import exclusive_run
from rapport.store.writer import StoreWriter


class EvalRequest(msgspec.Struct, frozen=True):
    """The command line's arguments; None means "from the run config, else the default"."""

    db: Path
    scenarios: int
    baseline: str  # backend specs (see config.backend_spec)
    candidate: str
    seed: int | None = None
    user_backend: str | None = None
    judges: tuple[str, ...] = ()
    config: Path | None = None
    domain: Path | None = None
    turns: int | None = None
    max_active: int | None = None


class PreparedEval(msgspec.Struct, frozen=True):
    """Everything validated and built; nothing called yet."""

    request: EvalRequest
    settings: RunConfig
    domain: Domain
    seed: int
    turns: int | None
    eval_id: str
    held_out_plan: str
    sides: dict[str, BackendConfig]
    user_sim: BackendConfig
    gateways: dict[str, Gateway]  # user_sim, baseline, candidate (shared where identical)
    judges: list[Judge]
    database: Database
    redactor: Redactor  # built from this run's environment: every text stored


def prepare_eval(request: EvalRequest, environ: Mapping[str, str] | None = None) -> PreparedEval:
    """Validate specs, keys, domain and database before any model call (errors are one line)."""
    settings = load_run_config(request.config)
    environ = environ if environ is not None else dict(os.environ)
    shown = str(request.config or "run config")
    sides = {  # the specs first: a typo in one is refused before the database is touched
        "baseline": parse_backend_spec(request.baseline, "--baseline"),
        "candidate": parse_backend_spec(request.candidate, "--candidate"),
    }
    user_sim = (
        parse_backend_spec(request.user_backend, "--user-backend")
        if request.user_backend
        else settings.backends.user_sim
    )
    database = Database(request.db)
    database.initialise()
    domain = _eval_domain(request, settings, database)
    seed = request.seed if request.seed is not None else settings.seed
    turns = request.turns if request.turns is not None else settings.turns
    gateways = build_role_gateways({"user_sim": user_sim, **sides}, domain, environ, shown, "")
    configs = judge_configs(settings, request.judges)
    judges = build_judges(configs, domain, environ, shown)
    key_envs = api_key_env_names(settings, user_sim, *sides.values(), *(c.backend for c in configs))
    plan = held_out_plan_id(domain, seed, turns)
    return PreparedEval(
        request=request,
        settings=settings,
        domain=domain,
        seed=seed,
        turns=turns,
        eval_id=eval_id_for(plan, sides["baseline"], sides["candidate"], user_sim),
        held_out_plan=plan,
        sides=sides,
        user_sim=user_sim,
        gateways=gateways,
        judges=judges,
        database=database,
        redactor=Redactor.from_environ(environ, key_envs),
    )


def _eval_domain(request: EvalRequest, settings: RunConfig, database: Database) -> Domain:
    """`--domain`, else the corpus's own domain (what the candidate was trained on), else the
    configured or shipped one."""
    if request.domain is not None:
        return load_domain(request.domain)
    corpus = database.run_sync(
        lambda conn: conn.execute(
            "SELECT plan_id FROM plans WHERE purpose = 'corpus' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    )
    if corpus is not None:
        return database.run_sync(plan_domains)[corpus[0]]
    return load_domain(Path(settings.domain) if settings.domain else None)


def store_eval_plan(prepared: PreparedEval) -> None:
    """The held-out scenarios (marked held out, never trained on), each side's copies with
    pending conversations, and the eval run: all before any model call, all idempotent."""
    domain, now, count = prepared.domain, utc_now(), prepared.request.scenarios
    snapshot = msgspec.json.encode(domain).decode()
    scenarios = held_out_scenarios(domain, prepared.seed, prepared.turns, count)

    def plan(plan_id: str, purpose: str) -> PlanRecord:
        return PlanRecord(
            plan_id=plan_id,
            domain=domain.name,
            domain_fingerprint=domain.fingerprint(),
            seed=prepared.seed,
            turns=prepared.turns,
            domain_snapshot=snapshot,
            created_at=now,
            purpose=purpose,
        )

    def save(conn) -> None:
        save_plan(conn, plan(prepared.held_out_plan, "held_out"))
        save_scenarios(conn, scenarios, now, held_out=True, conversations=False)
        links = []
        for side in SIDES:
            save_plan(conn, plan(side_plan_id(prepared.eval_id, side), "eval"))
            copies = [side_scenario(s, prepared.eval_id, side) for s in scenarios]
            save_scenarios(conn, copies, now, held_out=True)
            links += [
                EvalConversation(side, s.index, s.scenario_id, c.scenario_id)
                for s, c in zip(scenarios, copies, strict=True)
            ]
        save_eval_conversations(conn, prepared.eval_id, links)
        save_eval_run(conn, eval_record(prepared, now))

    prepared.database.run_sync(save)


def eval_record(prepared: PreparedEval, now) -> EvalRunRecord:
    request = prepared.request
    return EvalRunRecord(
        eval_id=prepared.eval_id,
        domain=prepared.domain.name,
        held_out_plan_id=prepared.held_out_plan,
        seed=prepared.seed,
        turns=prepared.turns,
        baseline=request.baseline,
        candidate=request.candidate,
        user_sim=prepared.gateways["user_sim"].label,
        judges=[judge.id for judge in prepared.judges],
        pass_rule=prepared.settings.pass_rule,
        scenarios=request.scenarios,
        created_at=now,
        updated_at=now,
    )


async def _side_jobs(
    prepared: PreparedEval, contexts: Mapping[str, ConversationContext]
) -> AsyncIterator[tuple[ConversationContext, UnfinishedConversation]]:
    """Unfinished conversations of both sides, interleaved so both sides run at once."""
    chunk = constants.PLAN_CHUNK_SCENARIOS
    for start in range(0, prepared.request.scenarios, chunk):
        stop = min(start + chunk, prepared.request.scenarios)
        per_side = {
            side: await prepared.database.run(
                lambda conn, side=side, start=start, stop=stop: load_unfinished(
                    conn,
                    side_plan_id(prepared.eval_id, side),
                    start,
                    stop,
                    include_failed=prepared.settings.retry_failed,
                )
            )
            for side in SIDES
        }
        longest = max(len(jobs) for jobs in per_side.values())
        for position in range(longest):
            for side in SIDES:
                if position < len(per_side[side]):
                    yield contexts[side], per_side[side][position]


async def play_and_judge(
    prepared: PreparedEval,
    progress: RunProgress,
    display: Callable[[RunProgress], Awaitable[None]] | None = None,
) -> None:
    """Both sides' unfinished conversations, each judged as it completes; then whatever is
    still unjudged (from an interrupted run)."""
    run_id = uuid.uuid4().hex[:12]
    database, settings, domain = prepared.database, prepared.settings, prepared.domain
    await database.run(
        lambda conn: start_run(
            conn,
            RunRecord(
                run_id=run_id,
                plan_id=prepared.held_out_plan,
                command="eval",
                count=prepared.request.scenarios,
                status="running",
                started_at=utc_now(),
                user_backend=prepared.gateways["user_sim"].label,
                assistant_backend=" vs ".join(prepared.gateways[s].label for s in SIDES),
                settings=msgspec.json.encode(settings).decode(),
                rapport_version=VERSION,
            ),
            prepared.redactor,
        )
    )
    writer = StoreWriter(
        database,
        flush_rows=settings.store.flush_rows,
        flush_interval_s=settings.store.flush_interval_s,
        redactor=prepared.redactor,
    )
    send, receive = anyio.create_memory_object_stream[StoreEvent](constants.STORE_QUEUE_EVENTS)
    system = assistant_prompt(domain)
    judge_now = judge_as_completed(prepared.judges, domain)
    contexts = {
        side: ConversationContext(
            domain=domain,
            run_id=run_id,
            gateways={
                "user_sim": prepared.gateways["user_sim"],
                "assistant": prepared.gateways[side],
            },
            backends=Backends(user_sim=prepared.user_sim, assistant=prepared.sides[side]),
            sink=send,
            progress=progress,
            assistant_system=system,
            after_complete=judge_now,
        )
        for side in SIDES
    }
    accounted = {**prepared.gateways, **{f"judge:{j.id}": j.gateway for j in prepared.judges}}
    prices = load_prices(settings.prices)
    status = "interrupted"
    stopped_by: StopReason | None = None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run, receive)
            async with send, anyio.create_task_group() as side_tasks:
                if display is not None:
                    side_tasks.start_soon(display, progress)
                await run_bounded(
                    _side_jobs(prepared, contexts),
                    settings.max_active,
                    lambda item: run_conversation(item[1], item[0]),
                )
                plans = [side_plan_id(prepared.eval_id, side) for side in SIDES]
                domains = dict.fromkeys(plans, domain)
                await judge_pending(
                    database,
                    prepared.judges,
                    domains,
                    send,
                    settings.max_active,
                    plans,
                    prepared.request.scenarios,
                )
                side_tasks.cancel_scope.cancel()
        status = "finished"
    except* ProviderUnusable as stop:
        stopped_by = stop_reason(stop)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            snapshots = snapshot_gateways(run_id, accounted, prices, utc_now())
            await database.run(lambda conn: save_gateway_stats(conn, snapshots, prepared.redactor))
            await database.run(lambda conn: release_unfinished(conn, run_id, stopped_by, utc_now()))
            await database.run(lambda conn: finish_run(conn, run_id, status, utc_now()))
            for gateway in {id(g): g for g in prepared.gateways.values()}.values():
                await gateway.aclose()
            await close_judges(prepared.judges)


def summarise(prepared: PreparedEval) -> EvalSummary:
    """The figures of this eval over scenarios `0..N-1`, by this invocation's judges."""
    request, domain = prepared.request, prepared.domain
    judge_ids = [judge.id for judge in prepared.judges]
    count = request.scenarios

    def read(conn):
        return (
            status_counts(conn, prepared.eval_id, count),
            judged_sides(conn, prepared.eval_id, judge_ids, count),
            criterion_answers(conn, prepared.eval_id, judge_ids, count),
        )

    statuses, assessments, answers = prepared.database.run_sync(read)
    combined = combine_judges(
        assessments, len(judge_ids), prepared.settings.pass_rule, domain.rubric.pass_threshold
    )
    by_side = {side: {i: s for (sd, i), s in combined.items() if sd == side} for side in SIDES}
    base, cand = by_side["baseline"], by_side["candidate"]
    specs = {"baseline": request.baseline, "candidate": request.candidate}
    sides = [
        side_figures(
            side,
            specs[side],
            family_of(prepared.sides[side]),
            count,
            statuses[side],
            by_side[side],
            prepared.seed,
        )
        for side in SIDES
    ]
    paired = compare_sides(base, cand, prepared.seed)
    chosen = most_different(base, cand)
    transcripts = prepared.database.run_sync(
        lambda conn: side_transcripts(conn, prepared.eval_id, chosen)
    )
    examples = [
        example(
            i,
            base[i].score,
            cand[i].score,
            transcripts[("baseline", i)],
            transcripts[("candidate", i)],
        )
        for i in chosen
    ]
    judge_families = [family_of(judge.config.backend) for judge in prepared.judges]
    same = gateway_key(prepared.sides["baseline"]) == gateway_key(prepared.sides["candidate"])
    return EvalSummary(
        eval_id=prepared.eval_id,
        domain=domain.name,
        scenarios=count,
        seed=prepared.seed,
        user_sim=prepared.gateways["user_sim"].label,
        judges=[f"{j.id} ({j.gateway.label})" for j in prepared.judges],
        judge_families=judge_families,
        pass_rule=prepared.settings.pass_rule,
        sides=sides,
        paired=paired,
        categories=category_deltas(base, cand),
        criteria=criterion_deltas(answers),
        examples=examples,
        warnings=honesty_warnings(
            paired, sides, judge_families, same, family_of(prepared.user_sim)
        ),
    )


def run_eval(
    request: EvalRequest,
    *,
    environ: Mapping[str, str] | None = None,
    display: Callable[[PreparedEval], Callable[[RunProgress], Awaitable[None]] | None]
    | None = None,
) -> EvalSummary:
    """The whole command: validate, store the plan, play, judge, summarise (and store it)."""
    prepared = prepare_eval(request, environ)
    with exclusive_run(request.db):
        prepared.database.run_sync(mark_abandoned_runs)
        store_eval_plan(prepared)
        progress = RunProgress(total=2 * request.scenarios)
        try:
            run_interruptible(
                play_and_judge, prepared, progress, display(prepared) if display else None
            )
        except Interrupted as stop:
            statuses = prepared.database.run_sync(
                lambda conn: status_counts(conn, prepared.eval_id, request.scenarios)
            )
            complete = sum(counts.get("complete", 0) for counts in statuses.values())
            stop.progress = f"{complete:,} of {2 * request.scenarios:,} conversations complete"
            raise
        summary = summarise(prepared)
        encoded = msgspec.json.encode(summary).decode()
        prepared.database.run_sync(lambda conn: save_eval_summary(conn, prepared.eval_id, encoded))
    return summary
