"""The evaluation harness's preparation and figures: held-out scenarios validated and stored,
both sides' gateways and judges built, and the summary read back. The stage that plays and
judges them is stages.evaluate."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from rapport.config.backend_spec import parse_backend_spec
from rapport.config.domain import Domain
from rapport.config.loader import load_domain
from rapport.config.prices import load_prices
from rapport.config.run import (
    BackendConfig,
    RunConfig,
    api_key_env_names,
    load_run_config,
    with_overrides,
)
from rapport.config.secrets import Redactor
from rapport.engine.budget import SpendGuard, attach_budget
from rapport.engine.factory import build_role_gateways, gateway_key
from rapport.engine.gateway import Gateway
from rapport.evaluation.families import family_of
from rapport.evaluation.held_out import (
    eval_id_for,
    held_out_plan_id,
    held_out_scenarios,
    side_plan_id,
    side_scenario,
)
from rapport.evaluation.summary import (
    ConversationScore,
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
from rapport.judges.panel import build_judges, judge_configs
from rapport.store.database import Database
from rapport.store.evaluations import (
    SIDES,
    EvalConversation,
    EvalRunRecord,
    criterion_answers,
    judged_sides,
    latest_corpus_plan,
    save_eval_conversations,
    save_eval_run,
    side_transcripts,
    status_counts,
)
from rapport.store.judgements import plan_domains
from rapport.store.plans import (
    PlanRecord,
    save_plan,
    save_scenarios,
)
from rapport.store.rows import utc_now
from rapport.store.spend import plan_spend


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
    max_cost: float | None = None  # US dollars, over every run of this eval (budget_usd)


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
    budget: SpendGuard | None = None  # --max-cost: shared by every gateway of the run


def prepare_eval(request: EvalRequest, environ: Mapping[str, str] | None = None) -> PreparedEval:
    """Validate specs, keys, domain and database before any model call (errors are one line)."""
    settings = with_overrides(
        load_run_config(request.config), max_active=request.max_active, budget_usd=request.max_cost
    )
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
    prices = load_prices(settings.prices)
    gateways = build_role_gateways(
        {"user_sim": user_sim, **sides}, environ, shown, "", prices=prices
    )
    configs = judge_configs(settings, request.judges)
    judges = build_judges(configs, environ, shown, prices)
    key_envs = api_key_env_names(settings, user_sim, *sides.values(), *(c.backend for c in configs))
    plan = held_out_plan_id(domain, seed, turns)
    budget = None
    if settings.budget_usd is not None:
        budget = SpendGuard(settings.budget_usd)
        attach_budget(budget, {**gateways, **{f"judge:{j.id}": j.gateway for j in judges}}, prices)
        labels = (gateways["user_sim"].label, eval_assistants(gateways))
        budget.spent_before_usd = database.run_sync(
            lambda conn: plan_spend(conn, plan, "eval", labels)
        )  # what earlier runs of this eval spent counts against it
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
        budget=budget,
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
            judged_sides(conn, prepared.eval_id, judge_ids, count, "user"),
        )

    statuses, assessments, answers, user_assessments = prepared.database.run_sync(read)
    rule = prepared.settings.pass_rule
    combined = combine_judges(assessments, len(judge_ids), rule, domain.rubric.pass_threshold)
    by_side = {side: {i: s for (sd, i), s in combined.items() if sd == side} for side in SIDES}
    users: dict[str, dict[int, ConversationScore]] | None = None
    if domain.simulator_rubric is not None:  # the user side is judged: how often it failed
        threshold = domain.simulator_rubric.pass_threshold
        user_combined = combine_judges(user_assessments, len(judge_ids), rule, threshold)
        users = {s: {i: c for (sd, i), c in user_combined.items() if sd == s} for s in SIDES}
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
            None if users is None else users[side],
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
