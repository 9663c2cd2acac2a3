"""`rapport judge`: judge every complete conversation that a configured judge has not fully
assessed. Re-running is idempotent (verdict key: conversation, judge, criterion) and resumes
after a kill, asking only the missing criteria."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio
import msgspec

from rapport.config.domain import Domain
from rapport.config.errors import ConfigError, RapportError
from rapport.config.run import JudgeConfig, RunConfig
from rapport.config.sides import SIDES, Side
from rapport.engine.batch_api import BATCH_PROVIDERS, batch_client
from rapport.engine.progress import JudgingProgress, RunProgress
from rapport.judges.judge import Judge
from rapport.judges.panel import judge_configs
from rapport.stages.judge_batch import BatchJudging, BatchProgress, BatchSettings
from rapport.stages.judge_pool import JudgePool, sided_plans
from rapport.stages.preparation import PreparedRun, environment, prepare_run, run_settings
from rapport.stages.progress import Progress
from rapport.stages.session import RunSession, new_run_id, run_record
from rapport.stages.shell import run_session, stage_shell
from rapport.store.database import Database
from rapport.store.errors import StoreError
from rapport.store.judgements import corpus_assessment_count, plan_domains, record_pass_rule
from rapport.store.plans import RunRecord, record_judged_count
from rapport.store.sides import SIDE_TABLES


class JudgeRequest(msgspec.Struct, frozen=True):
    db: Path
    config: Path | None = None
    judges: tuple[str, ...] = ()  # backend specs; each becomes a judge (overrides the config)
    max_active: int | None = None
    batch: bool = False  # every judge through its provider's batch API (`--batch`)
    sides: tuple[Side, ...] = SIDES  # `--side`: the assistant's rubric, the user's, or both


class JudgeSummary(msgspec.Struct, frozen=True):
    """What a judging run did (`rapport judge`, `Corpus.judge`): conversation-judge pairs
    judged, assessments stored, criteria answered and failed (asked again next run)."""

    judged: int
    assessed: int
    failed_criteria: int
    elapsed_s: float
    judges: tuple[str, ...]
    answered_criteria: int = 0  # asked by this run and answered
    simulator_assessed: int = 0  # user-side assessments stored (simulator_rubric.yaml)
    batches: BatchProgress | None = None  # when some judge went through a batch API


class JudgeRun(PreparedRun, frozen=True, kw_only=True):
    """A prepared `rapport judge`: its judges built, the corpus's domains read; nothing called
    yet."""

    request: JudgeRequest
    domains: dict[str, Domain]  # plan -> its domain, every plan of the corpus
    batched: frozenset[str]  # the judges that go through their provider's batch API
    batch_settings: BatchSettings


def prepare_judging(request: JudgeRequest, environ: Mapping[str, str] | None = None) -> JudgeRun:
    """Validate config, judges and database before any call (errors are one line)."""
    settings = run_settings(request.config, {"--max-active": ("max_active", request.max_active)})
    configs = judge_configs(settings, request.judges)  # a bad spec is refused before any write
    shown = str(request.config or "run config")
    batched = batch_judge_ids(configs, request.batch, shown)
    if not request.db.exists():
        raise StoreError(f"{request.db}: no such database (run `rapport generate` first)")
    database = Database(request.db)
    database.initialise()
    domains = database.run_sync(plan_domains)
    if request.sides == ("user",) and domains and sided_plans(domains, "user") == []:
        raise RapportError(
            "--side user: no domain of this corpus has a simulator_rubric.yaml, so there is "
            "no user side to judge (add one to the domain and generate a new plan)"
        )
    environ = environment(environ)
    prepared = prepare_run(
        settings, database, environ=environ, shown=shown, judges=configs
    )  # no budget: `rapport judge` has no --max-cost
    return JudgeRun(
        **msgspec.structs.asdict(prepared),
        request=request,
        domains=domains,
        batched=frozenset(batched),
        batch_settings=BatchSettings.from_environ(environ),
    )


def judge_corpus(
    request: JudgeRequest,
    environ: Mapping[str, str] | None = None,
    display: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> JudgeSummary:
    """The whole command: validate, then judge what is pending, streaming verdicts to DuckDB;
    `display` shows the judging live as `rapport generate` shows its conversations, `say`
    prints batch judging's progress lines (submitted, polling, done, failed)."""
    prepared = prepare_judging(request, environ)
    database, settings, judges = prepared.database, prepared.settings, prepared.judges
    batched = prepared.batched
    started = time.perf_counter()

    def standing() -> str:
        stored = f"{database.run_sync(corpus_assessment_count):,} assessments stored"
        return stored + (" (open batches are re-attached, not paid again)" if batched else "")

    with stage_shell(prepared, request.db, standing) as run:
        database.run_sync(lambda conn: record_pass_rule(conn, settings.pass_rule))
        progress = RunProgress(total=0, judging=JudgingProgress())
        live = [judge for judge in judges if judge.id not in batched]
        batch_progress = BatchProgress() if batched else None

        async def work(session: RunSession) -> JudgingProgress:
            counts = progress.judging
            assert counts is not None
            async with anyio.create_task_group() as group:
                for judge in judges:
                    if judge.id in batched and batch_progress is not None:
                        batch = BatchJudging(
                            judge, batch_client(judge.gateway.backend), prepared.domains,
                            database, session.sink, session.run_id, prepared.batch_settings,
                            counts, batch_progress, say or _quiet, sides=request.sides,
                        )  # fmt: skip
                        group.start_soon(batch.run)
                pool = JudgePool(
                    live, prepared.domains, session.sink, settings.max_active, counts,
                    sides=request.sides,
                )  # fmt: skip
                async with pool.running(database):
                    pass  # nothing is submitted: the pool judges what is stored
            return counts

        record = judge_run_record(new_run_id(), judges, prepared.domains, settings)

        async def main() -> JudgingProgress:  # shown: the judges' gateways, its only ones
            return await run_session(
                prepared, record, progress, work,
                standing=standing, display=display, shown=prepared.accounted,
            )  # fmt: skip

        counts = run(main)
        database.run_sync(lambda conn: record_judged_count(conn, record.run_id, counts.judged))
    return JudgeSummary(
        judged=counts.judged,
        assessed=database.run_sync(corpus_assessment_count),
        failed_criteria=counts.failed,
        elapsed_s=time.perf_counter() - started,
        judges=tuple(f"{j.id} ({j.gateway.label})" for j in judges),
        answered_criteria=counts.answered,
        simulator_assessed=database.run_sync(
            lambda conn: corpus_assessment_count(conn, SIDE_TABLES["user"].assessments)
        ),
        batches=batch_progress,
    )


def batch_judge_ids(configs: Sequence[JudgeConfig], everyone: bool, config_file: str) -> set[str]:
    """The judges that go through their provider's batch API: all with `--batch`, else those
    with `batch: true`. A provider without one is refused before anything is written: the
    user asked for the batch price, and judging live instead would quietly cost double."""
    chosen = set()
    for index, config in enumerate(configs):
        if not (everyone or config.batch):
            continue
        provider = config.backend.provider
        if provider not in BATCH_PROVIDERS:
            problem = f"provider {provider} has no batch API (openai and anthropic have one)"
            if everyone:
                raise RapportError(
                    f"--batch: judge {config.id!r}: {problem}; run without --batch, or set "
                    "`batch: true` only on the judges whose provider has one"
                )
            raise ConfigError(config_file, f"judges[{index}].batch", problem)
        chosen.add(config.id)
    return chosen


def _quiet(line: str) -> None:
    """No batch progress lines."""


def judge_run_record(
    run_id: str, judges: Sequence[Judge], domains: Mapping[str, Domain], settings: RunConfig
) -> RunRecord:
    """A `runs` row for `rapport judge`, so its requests, failures and cost are in SQL like a
    generation run's. It spans every corpus plan (their ids, comma-separated); the judges'
    backends stand in the assistant column; `count` becomes the conversations judged."""
    return run_record(
        run_id,
        "judge",
        ",".join(sorted(domains)),
        0,
        "",
        ", ".join(f"{j.id} ({j.gateway.label})" for j in judges),
        settings,
    )
