"""`rapport eval`: play the held-out scenarios with each side as the assistant (both sides at
once, through their gateways, against one user simulator), judge every conversation with the
same judges as it completes, and compare. Everything streams into DuckDB; a re-run resumes.
The whole stage lives here: its plan (held-out scenarios validated and stored, both sides'
gateways and judges built) and its work; rapport.evaluation computes the figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Annotated

import msgspec
from duckdb import DuckDBPyConnection as Connection

from rapport.agents.conversation import ConversationContext, run_conversation
from rapport.agents.prompts import assistant_prompt
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.constants import MAX_COUNT
from rapport.config.domain import Domain
from rapport.config.loader import load_domain
from rapport.config.run import BackendConfig, Backends, RunConfig
from rapport.engine.budget import within_budget
from rapport.engine.gateway import Gateway
from rapport.engine.progress import JudgingProgress, RunProgress
from rapport.engine.scheduler import run_bounded
from rapport.evaluation.held_out import (
    eval_id_for,
    held_out_plan_id,
    held_out_scenarios,
    side_plan_id,
    side_scenario,
)
from rapport.evaluation.summary import EvalSummary
from rapport.judges.panel import judge_configs
from rapport.stages.eval_summary import summarise
from rapport.stages.jobs import unfinished_conversations
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
from rapport.store.database import Database
from rapport.store.evaluations import (
    SIDES,
    EvalConversation,
    EvalRunRecord,
    latest_corpus_plan,
    save_eval_conversations,
    save_eval_run,
    save_eval_summary,
    status_counts,
)
from rapport.store.judgements import plan_domains
from rapport.store.plans import PlanRecord, save_plan, save_scenarios
from rapport.store.rows import utc_now
from rapport.store.spend import plan_spend


class EvalRequest(msgspec.Struct, frozen=True):
    """The command line's arguments; None means "from the run config, else the default"."""

    db: Path
    scenarios: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]  # checked as --scenarios is
    baseline: str  # backend specs (see config.backend_spec)
    candidate: str
    seed: int | None = None
    user_backend: str | None = None
    judges: tuple[str, ...] = ()
    config: Path | None = None
    domain: Path | None = None
    turns: int | None = None
    max_active: int | None = None
    max_cost: float | None = None  # US dollars, over every run of this eval (budget_usd)


class PreparedEval(PreparedRun, frozen=True, kw_only=True):
    """Everything validated and built; nothing called yet. `gateways`: user_sim, baseline,
    candidate (shared where identical)."""

    request: EvalRequest
    domain: Domain
    seed: int
    turns: int | None
    eval_id: str
    held_out_plan: str
    sides: dict[str, BackendConfig]
    user_sim: BackendConfig


def prepare_eval(request: EvalRequest, environ: Mapping[str, str] | None = None) -> PreparedEval:
    """Validate specs, keys, domain and database before any model call (errors are one line)."""
    settings = run_settings(
        checked_request(request).config,
        {
            "--seed": ("seed", request.seed),
            "--turns": ("turns", request.turns),
            "--max-active": ("max_active", request.max_active),
            "--max-cost": ("budget_usd", request.max_cost),
        },
    )
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
    plan = held_out_plan_id(domain, settings.seed, settings.turns)

    def earlier_spend(gateways: Mapping[str, Gateway]) -> Callable[[Connection], float]:
        """What earlier runs of this eval spent: these sides on this held-out plan."""
        labels = (gateways["user_sim"].label, eval_assistants(gateways))
        return lambda conn: plan_spend(conn, plan, "eval", labels)

    prepared = prepare_run(
        settings,
        database,
        environ=environment(environ),
        shown=str(request.config or "run config"),
        roles={"user_sim": user_sim, **sides},
        judges=judge_configs(settings, request.judges),
        key_prefix="",
        earlier_spend=earlier_spend,
    )
    return PreparedEval(
        **msgspec.structs.asdict(prepared),
        request=request,
        domain=domain,
        seed=settings.seed,
        turns=settings.turns,
        eval_id=eval_id_for(plan, sides["baseline"], sides["candidate"], user_sim),
        held_out_plan=plan,
        sides=sides,
        user_sim=user_sim,
    )


def eval_assistants(gateways: Mapping[str, Gateway]) -> str:
    """The assistant backend label an eval run is recorded with (`runs.assistant_backend`)."""
    return " vs ".join(gateways[side].label for side in SIDES)


def _eval_domain(request: EvalRequest, settings: RunConfig, database: Database) -> Domain:
    """`--domain`, else the corpus's own domain (what the candidate was trained on), else the
    configured or shipped one."""
    if request.domain is not None:
        return load_domain(request.domain)
    corpus = database.run_sync(latest_corpus_plan)
    if corpus is not None:
        return database.run_sync(plan_domains)[corpus]
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


async def play_and_judge(
    prepared: PreparedEval,
    progress: RunProgress,
    display: Progress | None = None,
) -> None:
    """Both sides' unfinished conversations, each judged as it completes, and whatever an
    interrupted run left unjudged: one session, generation and judging as two pools."""
    database, settings, domain = prepared.database, prepared.settings, prepared.domain
    record = run_record(
        new_run_id(),
        "eval",
        prepared.held_out_plan,
        prepared.request.scenarios,
        prepared.gateways["user_sim"].label,
        eval_assistants(prepared.gateways),
        settings,
    )
    plans = [side_plan_id(prepared.eval_id, side) for side in SIDES]

    async def work(session: RunSession) -> None:
        progress.judging = JudgingProgress()
        pool = JudgePool(
            prepared.judges,
            dict.fromkeys(plans, domain),
            session.sink,
            settings.max_active,
            progress.judging,
        )
        system = assistant_prompt(domain)
        contexts: Mapping[int, ConversationContext] = {
            which: ConversationContext(
                domain=domain,
                run_id=session.run_id,
                gateways={
                    "user_sim": prepared.gateways["user_sim"],
                    "assistant": prepared.gateways[side],
                },
                backends=Backends(user_sim=prepared.user_sim, assistant=prepared.sides[side]),
                sink=session.sink,
                progress=progress,
                assistant_system=system,
                after_complete=pool.submit,
                cache=settings.cache,
            )
            for which, side in enumerate(SIDES)
        }
        jobs = unfinished_conversations(
            database, plans, prepared.request.scenarios, include_failed=settings.retry_failed
        )
        below = prepared.request.scenarios
        async with aclosing(jobs), pool.running(database, plans, below, exclude_run=session.run_id):
            await run_bounded(
                within_budget(jobs, prepared.budget),
                settings.max_active,
                lambda item: run_conversation(item[1], contexts[item[0]]),
            )

    await run_session(
        prepared, record, progress, work, standing=lambda: completed(prepared), display=display
    )


def completed(prepared: PreparedEval) -> str:
    """E.g. "40 of 100 conversations complete" (both sides): where a stopped eval stands."""
    count = prepared.request.scenarios
    statuses = prepared.database.run_sync(lambda conn: status_counts(conn, prepared.eval_id, count))
    complete = sum(counts.get("complete", 0) for counts in statuses.values())
    return f"{complete:,} of {2 * count:,} conversations complete"


def run_eval(
    request: EvalRequest,
    *,
    environ: Mapping[str, str] | None = None,
    display: Progress | None = None,
) -> EvalSummary:
    """The whole command: validate, store the plan, play, judge, summarise (and store it)."""
    prepared = prepare_eval(request, environ)
    with stage_shell(prepared, request.db, lambda: completed(prepared)) as run:
        store_eval_plan(prepared)
        progress = RunProgress(total=2 * request.scenarios)
        run(play_and_judge, prepared, progress, display)
        summary = summarise(prepared)
        encoded = msgspec.json.encode(summary).decode()
        prepared.database.run_sync(lambda conn: save_eval_summary(conn, prepared.eval_id, encoded))
    return summary
