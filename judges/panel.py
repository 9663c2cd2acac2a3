"""The judges of a run: built from `--judge` specs or the config, and what one judge makes of
one conversation (its missing criteria asked, the answers scored) as a store event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from rapport.config import constants
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.domain import Domain
from rapport.config.exception_groups import first_leaf
from rapport.config.prices import PriceTable
from rapport.config.run import JudgeConfig, RunConfig
from rapport.config.sides import rubric_for
from rapport.engine.budget import BudgetReached
from rapport.engine.errors import ProviderUnusable
from rapport.engine.factory import build_gateway, limits_of, price_of
from rapport.judges.judge import Judge, judge_conversation
from rapport.judges.scoring import active_criteria, score
from rapport.judges.verdicts import Verdict
from rapport.store.errors import StoreError
from rapport.store.judgements import JudgeJob
from rapport.store.rows import AssessmentRow, JudgeFailureRow, StoreEvent, VerdictRow, utc_now

DEFAULT_JUDGE_ID = "judge"


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
    configs: Sequence[JudgeConfig],
    environ: Mapping[str, str],
    config_file: str,
    prices: PriceTable | None = None,
) -> list[Judge]:
    judges = []
    for index, config in enumerate(configs):
        if config.backend.provider == "llamacpp" and config.context_tokens is None:
            config = msgspec.structs.replace(config, context_tokens=config.backend.n_ctx)
        gateway = build_gateway(
            config.backend, limits_of(config.backend), environ, config_file,
            f"judges[{index}].backend", price=price_of(config.backend, prices),
        )  # fmt: skip
        judges.append(Judge(config, gateway))
    ids = [judge.id for judge in judges]
    if len(set(ids)) != len(ids):
        raise StoreError(f"{config_file}: judges: ids must be distinct, got {', '.join(ids)}")
    return judges


def missing_criteria(domain: Domain, job: JudgeJob) -> tuple[int, set[str]]:
    """The transcript's exchanges, and the applicable criteria of the job's side this judge
    has not answered."""
    exchanges = sum(turn.role == "assistant" for turn in job.messages)
    rubric = rubric_for(domain, job.scenario, job.side)
    wanted = {c.id for c in active_criteria(rubric, exchanges)} if rubric is not None else set()
    return exchanges, wanted - set(job.existing)


async def assess(judge: Judge, domain: Domain, job: JudgeJob) -> StoreEvent:
    """Ask this judge the criteria it has not answered; score once all are answered. An
    unexpected error while judging becomes a judge failure of every criterion asked (asked
    again next run), never a failure of the conversation; a provider that cannot be used
    still stops the run."""
    exchanges, missing = missing_criteria(domain, job)
    try:
        new = await judge_conversation(
            judge, domain, job.scenario, job.messages, only=missing, side=job.side
        )
    except Exception as error:  # the criteria are asked in a task group: errors come grouped
        if _holds(error, BudgetReached):  # nothing stored: judged next run, never failed
            return StoreEvent()
        if _holds(error, ProviderUnusable):
            raise
        leaf = first_leaf(error)
        problem = f"internal:{type(leaf).__name__}: {leaf}"
        new = [Verdict(criterion, None, error=problem) for criterion in sorted(missing)]
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
    rubric = rubric_for(domain, job.scenario, job.side)
    if not failures and rubric is not None:
        result = score(rubric, answers, exchanges)
        assessment = AssessmentRow(
            conversation_id=cid,
            judge_id=judge.id,
            score=result.score,
            passed=result.passed,
            safety_failed=result.safety_failed,
            pass_threshold=rubric.pass_threshold,
            category_scores=msgspec.json.encode(result.category_scores).decode(),
            failed_gates=list(result.failed_gates),
            created_at=now,
        )
    return StoreEvent(verdicts=rows, judge_failures=failures, assessment=assessment, side=job.side)


def _holds(error: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(kind) is not None
    return isinstance(error, kind)


def judging_concurrency(judges: Sequence[Judge], max_active: int) -> int:
    """Conversations judged at once: `max_active`, unless every judge sits behind an in-flight
    cap (a local model), whose few slots a handful of conversations keep busy — so each one
    finishes, and is stored, as soon as it can."""
    caps = [judge.gateway.limits.max_in_flight for judge in judges]
    if not caps or None in caps:
        return max_active
    slots = sum(cap for cap in caps if cap is not None)
    return max(1, min(max_active, slots * constants.JUDGE_CONVERSATIONS_PER_SLOT))
