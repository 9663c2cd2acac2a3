"""`rapport.open(path)` and the `Corpus` it returns: one DuckDB file and every stage over it,
from a script, a notebook or an event loop. The command line builds the same requests from its
flags and runs them through the same functions (rapport._stages)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import msgspec
import msgspec.yaml

from rapport import _reads
from rapport._stages import (
    arun_evaluate,
    arun_generate,
    arun_judge,
    draw_count,
    run_estimate,
    run_evaluate,
    run_generate,
    run_judge,
)
from rapport._sync import call_blocking, loop_running
from rapport.config.backend_settings import BackendBase
from rapport.config.errors import BadInput
from rapport.config.run import Backends, RunConfig, load_run_config
from rapport.config.shards import parse_shard
from rapport.config.sides import parse_sides
from rapport.errors import api_errors
from rapport.evaluation.summary import EvalSummary
from rapport.stages.estimate import Estimate
from rapport.stages.evaluate import EvalRequest
from rapport.stages.generate import GenerateRequest, RunSummary
from rapport.stages.judge import JudgeRequest, JudgeSummary
from rapport.store.conversation_reads import ConversationRecord, conversation_page
from rapport.store.database import Database, connect_for_reading
from rapport.store.errors import StoreError
from rapport.store.merge import MergeSummary
from rapport.store.query import check_read_only
from rapport.store.stats import Section

if TYPE_CHECKING:
    from datasets import DatasetDict

DEFAULT_VIEW_PORT = 8765
CONVERSATION_PAGE = 200  # conversations read from the file at a time by `conversations`
PathLike = str | os.PathLike[str]


@api_errors
def open(path: PathLike) -> Corpus:
    """Open the Rapport database at `path`, creating it (and its schema) when there is no file;
    an older Rapport file is brought up to date. Raises StoreError (a BadInput) for a file that
    is not a Rapport database (another DuckDB file, any other file) or a missing folder."""
    return Corpus(Path(path))


@api_errors
def merge(shards: Sequence[PathLike], out: PathLike) -> MergeSummary:
    """Merge the DuckDB files of one plan's shards (`generate(shard="K/N")`, or `rapport
    generate --shard K/N`) into the corpus `out`, created if missing, as `rapport merge` does;
    merging again after a shard was resumed or extended adds only what is new. Returns what
    each shard added and the merged corpus's conversations by status (`rapport.open(out)`
    opens it). Raises StoreError (a BadInput, nothing written) for no shard, shards of another
    plan, domain or seed, a corpus of another plan, or `out` among the shards."""
    files = [Path(shard) for shard in shards]
    return call_blocking(lambda: _reads.merge(Path(out), files))


class Corpus:
    """One Rapport database and the stages over it. Every method that runs a stage works in a
    script, inside a running event loop (a Jupyter cell: the stage runs on a worker thread and
    the call blocks) and, as `a…`, awaited on one. Ctrl-C stops a run cleanly (RunInterrupted:
    stored, `interrupted`, resumed by the same call); errors are RapportError subclasses with
    the command line's messages."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the database at `path`; raises StoreError for a foreign file."""
        self.path = path
        database = Database(path)
        call_blocking(database.initialise)

    def __repr__(self) -> str:
        return f"rapport.Corpus({str(self.path)!r})"

    # generate ---------------------------------------------------------------------------

    def _generate_request(
        self,
        count: int | None,
        *,
        turns: int | None,
        backend: str | None,
        seed: int | None,
        config: PathLike | None,
        domain: PathLike | None,
        max_active: int | None,
        user_backend: str | None,
        assistant_backend: str | None,
        judges: Sequence[str] | None,
        max_cost: float | None,
        shard: str | None,
        until_passing: int | None,
    ) -> GenerateRequest:
        judge_specs = tuple(judges or ())
        return _request(
            GenerateRequest,
            db=self.path,
            count=draw_count(count, until_passing),
            seed=seed,
            domain=_path(domain),
            config=_path(config),
            max_active=max_active,
            turns=turns,
            backend=backend,
            user_backend=user_backend,
            assistant_backend=assistant_backend,
            judging="always" if judge_specs else "configured",
            judges=judge_specs,
            max_cost=max_cost,
            shard=parse_shard(shard) if shard is not None else None,
            until_passing=until_passing,
        )

    @api_errors
    def generate(
        self,
        count: int | None = None,
        *,
        turns: int | None = None,
        backend: str | BackendBase | None = None,
        seed: int | None = None,
        config: PathLike | RunConfig | None = None,
        domain: PathLike | None = None,
        max_active: int | None = None,
        user_backend: str | None = None,
        assistant_backend: str | None = None,
        judges: Sequence[str] | None = None,
        max_cost: float | None = None,
        shard: str | None = None,
        until_passing: int | None = None,
        progress: bool = True,
    ) -> RunSummary:
        """Plan `count` conversations (if this database has no plan for these settings) and
        simulate every unfinished one, as `rapport generate` does; calling it again resumes.
        `backend` is a backend spec (simulated, null, llamacpp, gguf:PATH, openai:MODEL, …) or
        a `rapport.Backend` object, `config` a RUN.yaml or a `rapport.RunConfig` object; with
        `judges` (specs) or the config's `judges:`, each conversation is judged as it
        completes; `until_passing=N` plays until N pass (count: the most it may draw).
        Raises BadInput (a bad argument, config or database), ProviderUnusable, BudgetReached
        (`max_cost` reached: a higher one continues), RunInterrupted (Ctrl-C)."""
        with _config_file(config, backend) as (config, backend):
            request = self._generate_request(
                count, turns=turns, backend=backend, seed=seed, config=config, domain=domain,
                max_active=max_active, user_backend=user_backend,
                assistant_backend=assistant_backend, judges=judges, max_cost=max_cost,
                shard=shard, until_passing=until_passing,
            )  # fmt: skip
            return run_generate(request, progress=progress)

    @api_errors
    async def agenerate(
        self,
        count: int | None = None,
        *,
        turns: int | None = None,
        backend: str | BackendBase | None = None,
        seed: int | None = None,
        config: PathLike | RunConfig | None = None,
        domain: PathLike | None = None,
        max_active: int | None = None,
        user_backend: str | None = None,
        assistant_backend: str | None = None,
        judges: Sequence[str] | None = None,
        max_cost: float | None = None,
        shard: str | None = None,
        until_passing: int | None = None,
        progress: bool = True,
    ) -> RunSummary:
        """`generate` for a running event loop: its work runs on the caller's loop (blocking
        preparation on a worker thread). Cancelling the await stops the run cleanly. Raises as
        `generate` does."""
        with _config_file(config, backend) as (config, backend):
            request = self._generate_request(
                count, turns=turns, backend=backend, seed=seed, config=config, domain=domain,
                max_active=max_active, user_backend=user_backend,
                assistant_backend=assistant_backend, judges=judges, max_cost=max_cost,
                shard=shard, until_passing=until_passing,
            )  # fmt: skip
            return await arun_generate(request, progress=progress)

    @api_errors
    def estimate(
        self,
        count: int,
        *,
        turns: int | None = None,
        backend: str | BackendBase | None = None,
        seed: int | None = None,
        config: PathLike | RunConfig | None = None,
        domain: PathLike | None = None,
        max_active: int | None = None,
        user_backend: str | None = None,
        assistant_backend: str | None = None,
        shard: str | None = None,
    ) -> Estimate:
        """What `generate` with these arguments would take (requests, tokens, cost with and
        without prompt caching, wall time), as `rapport generate --estimate` prints it: no model
        is called and nothing is written. Raises BadInput."""
        with _config_file(config, backend) as (config, backend):
            request = self._generate_request(
                count, turns=turns, backend=backend, seed=seed, config=config, domain=domain,
                max_active=max_active, user_backend=user_backend,
                assistant_backend=assistant_backend, judges=None, max_cost=None, shard=shard,
                until_passing=None,
            )  # fmt: skip
            return run_estimate(request)

    # judge ------------------------------------------------------------------------------

    def _judge_request(
        self,
        judges: Sequence[str] | None,
        config: PathLike | None,
        max_active: int | None,
        batch: bool,
        side: str,
    ) -> JudgeRequest:
        return _request(
            JudgeRequest,
            db=self.path,
            config=_path(config),
            judges=tuple(judges or ()),
            max_active=max_active,
            batch=batch,
            sides=parse_sides(side),
        )

    @api_errors
    def judge(
        self,
        judges: Sequence[str] | None = None,
        *,
        config: PathLike | RunConfig | None = None,
        max_active: int | None = None,
        batch: bool = False,
        side: str = "both",
        progress: bool = True,
    ) -> JudgeSummary:
        """Judge every complete, unjudged conversation, as `rapport judge` does: `judges` are
        backend specs (else the config's `judges:`), `side` is assistant, user or both,
        `batch` goes through the providers' batch APIs. Idempotent; resumes after a stop.
        Raises BadInput, ProviderUnusable, BudgetReached, RunInterrupted."""
        with _config_file(config, None) as (config, _):
            request = self._judge_request(judges, config, max_active, batch, side)
            return run_judge(request, progress=progress)

    @api_errors
    async def ajudge(
        self,
        judges: Sequence[str] | None = None,
        *,
        config: PathLike | RunConfig | None = None,
        max_active: int | None = None,
        batch: bool = False,
        side: str = "both",
        progress: bool = True,
    ) -> JudgeSummary:
        """`judge` for a running event loop (see `agenerate`). Raises as `judge` does."""
        with _config_file(config, None) as (config, _):
            request = self._judge_request(judges, config, max_active, batch, side)
            return await arun_judge(request, progress=progress)

    # evaluate ---------------------------------------------------------------------------

    def _eval_request(
        self, scenarios: int, baseline: str, candidate: str, **more: object
    ) -> EvalRequest:
        if more.get("config") is not None:
            more["config"] = _path(more["config"])  # type: ignore[arg-type]
        if more.get("domain") is not None:
            more["domain"] = _path(more["domain"])  # type: ignore[arg-type]
        more["judges"] = tuple(more.get("judges") or ())  # type: ignore[arg-type]
        return _request(
            EvalRequest,
            db=self.path,
            scenarios=scenarios,
            baseline=baseline,
            candidate=candidate,
            **more,
        )

    @api_errors
    def evaluate(
        self,
        scenarios: int,
        baseline: str,
        candidate: str,
        *,
        seed: int | None = None,
        judges: Sequence[str] | None = None,
        user_backend: str | None = None,
        config: PathLike | RunConfig | None = None,
        domain: PathLike | None = None,
        turns: int | None = None,
        max_active: int | None = None,
        max_cost: float | None = None,
        progress: bool = True,
    ) -> EvalSummary:
        """Play the same `scenarios` held-out scenarios with `baseline` and `candidate` (backend
        specs) as the assistant, judge both alike and return the paired comparison, as `rapport
        eval` does (it also writes the report folder: `rapport.EvalSummary` holds its figures).
        Re-running resumes. Raises BadInput, ProviderUnusable, BudgetReached, RunInterrupted."""
        with _config_file(config, None) as (config, _):
            request = self._eval_request(
                scenarios, baseline, candidate, seed=seed, judges=judges,
                user_backend=user_backend, config=config, domain=domain, turns=turns,
                max_active=max_active, max_cost=max_cost,
            )  # fmt: skip
            return run_evaluate(request, progress=progress)

    @api_errors
    async def aevaluate(
        self,
        scenarios: int,
        baseline: str,
        candidate: str,
        *,
        seed: int | None = None,
        judges: Sequence[str] | None = None,
        user_backend: str | None = None,
        config: PathLike | RunConfig | None = None,
        domain: PathLike | None = None,
        turns: int | None = None,
        max_active: int | None = None,
        max_cost: float | None = None,
        progress: bool = True,
    ) -> EvalSummary:
        """`evaluate` for a running event loop (see `agenerate`). Raises as `evaluate` does."""
        with _config_file(config, None) as (config, _):
            request = self._eval_request(
                scenarios, baseline, candidate, seed=seed, judges=judges,
                user_backend=user_backend, config=config, domain=domain, turns=turns,
                max_active=max_active, max_cost=max_cost,
            )  # fmt: skip
            return await arun_evaluate(request, progress=progress)

    # reading ----------------------------------------------------------------------------

    @api_errors
    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """Run a read-only query (SELECT / EXPLAIN) and return its result as a DuckDB relation
        held in memory (`.df()`, `.arrow()`, `.pl()`, `.fetchall()`, or more SQL over it); the
        database file is not held open afterwards, so a run may write to it. Raises StoreError
        (a BadInput) for a write statement, invalid SQL or a failed query, in the words of
        `rapport sql`."""
        check_read_only(query)
        with closing(connect_for_reading(self.path)) as conn:
            try:
                *before, last = duckdb.extract_statements(query)
                for statement in before:
                    conn.execute(statement.query)
                table = conn.sql(last.query).to_arrow_table()
            except duckdb.Error as error:
                raise StoreError(f"query failed: {' '.join(str(error).split())}") from None
        memory = duckdb.connect(":memory:")
        return memory.from_arrow(table)

    def conversations(
        self,
        *,
        status: str | None = None,
        passed: bool | None = None,
        limit: int | None = None,
    ) -> Iterator[ConversationRecord]:
        """The corpus's conversations in id order, read a page at a time: each with `.turns`
        (its messages in order), `.verdicts` (every judge's answers on the assistant side),
        `.passed` (None before judging) and `.summary` (status, topics, flaws, tokens).
        `status` (pending, complete, failed, …) and `passed` filter; `limit` caps the count.
        Raises StoreError when the database cannot be read."""
        if limit is not None and limit < 0:
            raise BadInput(f"limit must be at least 0, not {limit}")
        left = limit
        after: str | None = None
        while left is None or left > 0:
            size = CONVERSATION_PAGE if left is None else min(CONVERSATION_PAGE, left)
            with closing(connect_for_reading(self.path)) as conn:
                page = conversation_page(
                    conn, status=status, passed=passed, after=after, limit=size
                )
            yield from page
            if len(page) < size:
                return
            after = page[-1].summary.conversation_id
            left = None if left is None else left - len(page)

    @api_errors
    def dataset(
        self,
        *,
        min_score: float | None = None,
        dedup: float | None = None,
        tokenizer: str | None = None,
        max_tokens: int = 16_384,
        seed: int = 0,
    ) -> DatasetDict:
        """The training examples `rapport dataset build` would write, as a
        `datasets.DatasetDict` (train / validation / test) in memory: nothing is written
        (`.save_to_disk(...)` writes it). `min_score` keeps conversations scoring at least it,
        `dedup` one per near-duplicate cluster at that Jaccard similarity, `tokenizer` (a local
        folder) counts tokens exactly. Needs the `train` extra (datasets). Raises BadInput
        (no passing conversation, a bad threshold or tokenizer)."""
        from rapport.training.dataset_build import DatasetRequest, examples_dataset

        request = _request(
            DatasetRequest,
            db=self.path,
            out=Path(os.devnull),  # nothing is written: examples name no output folder
            tokenizer=tokenizer,
            max_tokens=max_tokens,
            min_score=min_score,
            seed=seed,
            dedup=dedup,
        )
        return call_blocking(lambda: examples_dataset(request))

    @api_errors
    def stats(self, *, repetition: bool = False) -> list[Section]:
        """The figures `rapport stats` prints, as titled sections (`.title`, and `.result`
        with `.columns` and `.rows`): conversations by status, lengths and tokens, by topic,
        flaw and backend, then the judging figures once something is judged. With
        `repetition`, over-used phrases and diversity per side instead (`rapport stats
        --repetition`). Reads only. Raises StoreError when the database cannot be read."""
        if repetition:
            return call_blocking(lambda: _reads.repetition_sections(self.path))
        return call_blocking(lambda: _reads.stats_sections(self.path))

    @api_errors
    def review_sample(
        self,
        n: int,
        *,
        strategy: str = "random",
        stratify: Sequence[str] = (),
        queue: str = "default",
        reviewer: str | None = None,
        seed: int = 0,
    ) -> _reads.SampleSummary:
        """Draw `n` complete conversations into the review queue `queue` for `rapport view`
        (replacing that queue, leaving the others), as `rapport review sample` does: `strategy`
        random, disagreement (judges part on the pass rule or a gate, then on the most
        criteria) or borderline (scores nearest the pass threshold), kept in proportion over
        `stratify` (topic, flaw, primary-topic, status, passed). Raises StoreError for an
        unknown strategy or stratum, or no complete conversation."""
        return call_blocking(
            lambda: _reads.sample_review_queue(
                self.path,
                n,
                strategy=strategy,
                stratify=tuple(stratify),
                queue=queue,
                reviewer=reviewer,
                seed=seed,
            )
        )

    @api_errors
    def report(self, out: PathLike, *, overwrite: bool = False) -> Path:
        """Write the corpus and judging figures as `report.md` with PNG plots into the folder
        `out`, as `rapport report` does, text redacted; returns the Markdown file's path. A
        folder holding anything but an earlier report is refused unless `overwrite`. Raises
        BadInput for a folder it may not replace, StoreError when the database cannot be read."""
        folder = Path(out)
        return call_blocking(
            lambda: _reads.write_corpus_report(self.path, folder, overwrite=overwrite)
        )

    # viewer -----------------------------------------------------------------------------

    @api_errors
    def view(self, port: int = DEFAULT_VIEW_PORT, *, host: str = "127.0.0.1") -> str:
        """Serve the corpus as a web page on loopback, as `rapport view` does. From a script:
        serves until interrupted (Ctrl-C), then returns the URL. Inside a running event loop (a
        notebook): serves in the background and returns the URL at once (port 0: a free port).
        Raises StoreError for a missing or foreign database, BadInput when the port is taken."""
        from rapport.viewer.app import make_app

        connect_for_reading(self.path).close()  # a missing or foreign file: one line first
        app = make_app(self.path, loopback_only=True)
        if loop_running():
            return _serve_in_background(app, host, port)
        return _serve_until_interrupted(app, host, port)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _serve_until_interrupted(app: object, host: str, port: int) -> str:
    """Serve `app` on this thread until Ctrl-C, printing the URL once it listens; the URL."""
    from aiohttp import web

    served: list[str] = []

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)  # type: ignore[arg-type]
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as error:
                detail = error.strerror or error
                raise BadInput(f"cannot listen on {host}:{port}: {detail}") from None
            served.append(_url(host, runner.addresses[0][1]))
            print(f"rapport view: {served[0]} (Ctrl+C stops)", flush=True)
            await asyncio.Event().wait()  # until interrupted
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return served[0] if served else _url(host, port)


def _serve_in_background(app: object, host: str, port: int) -> str:
    """Serve `app` on a daemon thread with its own loop (a notebook's loop runs the cells);
    the URL once it listens, or BadInput when it cannot."""
    from aiohttp import web

    ready = threading.Event()
    found: list[str] = []
    failure: list[BaseException] = []

    def serve() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app, access_log=None)  # type: ignore[arg-type]
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, host, port)
            loop.run_until_complete(site.start())
            bound = runner.addresses[0]
            found.append(_url(host, bound[1]))
        except OSError as error:
            failure.append(error)
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        finally:
            ready.set()
        loop.run_forever()  # until the process ends: the page serves while the notebook lives

    threading.Thread(target=serve, name="rapport-view", daemon=True).start()
    ready.wait()
    if failure:
        error = failure[0]
        detail = getattr(error, "strerror", None) or error
        raise BadInput(f"cannot listen on {host}:{port}: {detail}")
    return found[0]


@contextlib.contextmanager
def _config_file(
    config: PathLike | RunConfig | None, backend: str | BackendBase | None
) -> Iterator[tuple[Path | None, str | None]]:
    """The run config as the stages read it, a file: a RunConfig object (or a Backend object
    for both roles) is written as the YAML it decodes from, for the call's duration."""
    if not isinstance(config, RunConfig) and not isinstance(backend, BackendBase):
        yield _path(config), backend
        return
    settings = config if isinstance(config, RunConfig) else load_run_config(_path(config))
    if isinstance(backend, BackendBase):
        both = Backends(user_sim=backend, assistant=backend)  # type: ignore[arg-type]
        settings = msgspec.structs.replace(settings, backends=both)
    if settings.domain is not None and not Path(settings.domain).is_absolute():
        settings = msgspec.structs.replace(settings, domain=str(Path(settings.domain).resolve()))
    with tempfile.TemporaryDirectory(prefix="rapport-config-") as folder:
        path = Path(folder) / "run.yaml"
        path.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(settings)))
        yield path, None


def _path(value: PathLike | None) -> Path | None:
    return Path(value) if value is not None else None


def _request(kind: type, **values: object):
    """A request Struct decoded from keyword arguments, so a wrong type is one line."""
    try:
        return msgspec.convert(values, kind, from_attributes=False, strict=False, dec_hook=_paths)
    except msgspec.ValidationError as error:
        raise BadInput(f"{kind.__name__}: {error}") from None


def _paths(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, (str, Path)):
        return Path(value)
    raise NotImplementedError
