"""Judging through a provider's batch API (`rapport judge --batch`, `batch: true` per judge).

Every question a live judge would ask (stages/judge_pool.py, judges/judge.py) becomes one batch
item per window of the transcript, with a custom_id derived from what it asks, so the same
question always has the same id. Each batch is recorded in DuckDB (store/batches.py) as soon as
the provider accepts it: a killed run re-attaches to its open batches on the next run instead of
paying for them again, and items already answered are never sent again. Replies are validated
as live replies are; an invalid one gets the same single retry, with the problem fed back, in
the next batch. Items that fail or expire go into the next batch, at most `max_submissions`
times per run; after that they are judge failures, asked again by the next run, as live.
Verdicts and assessments reach the store as live ones do (judges/panel.py `assessment_event`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from rapport.config.domain import Domain
from rapport.config.errors import RapportError
from rapport.config.prices import usage_cost
from rapport.config.sides import SIDES, Side
from rapport.engine.batch_api import BatchClient, BatchRequest, ItemResult
from rapport.engine.clock import Clock, LoopClock
from rapport.engine.errors import BackendError, ProviderUnusable
from rapport.engine.progress import JudgingProgress
from rapport.engine.types import ChatMessage
from rapport.judges.judge import Judge, Question, questions, retry_prompt, verdicts_of
from rapport.judges.panel import assessment_event, missing_criteria
from rapport.judges.verdicts import CriterionAnswer, JudgeOutputError, Verdict
from rapport.stages.jobs import unjudged_conversations
from rapport.stages.judge_pool import sided_plans
from rapport.store.batches import (
    BatchItemRow,
    BatchRecord,
    ItemOutcome,
    answered_items,
    batch_item_ids,
    judge_failure_counts,
    open_batches,
    record_batch,
    record_batch_end,
)
from rapport.store.database import Database
from rapport.store.judgements import JudgeJob
from rapport.store.rows import StoreEvent, utc_now
from rapport.store.sides import SIDE_TABLES

T = TypeVar("T")
POLL_ENV = "RAPPORT_BATCH_POLL_S"
DEFAULT_POLL_S = 30.0
POLL_ERRORS_TOLERATED = 5  # consecutive transient errors while polling before the run stops


class BatchSettings(msgspec.Struct, frozen=True):
    """How batches are sent and waited for; `RAPPORT_BATCH_POLL_S` sets the polling interval
    (the provider's batches take minutes to hours: the default asks every 30 s)."""

    poll_s: float = DEFAULT_POLL_S
    max_submissions: int = 3  # batches one item may be sent in per run (failed, expired)
    max_items: int = 10_000  # items per batch (OpenAI takes 50,000, Anthropic 100,000)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> BatchSettings:
        raw = environ.get(POLL_ENV)
        if raw is None:
            return cls()
        try:
            poll_s = float(raw)
        except ValueError:
            poll_s = -1.0
        if not poll_s > 0:
            raise RapportError(f"{POLL_ENV}={raw!r}: not a positive number of seconds")
        return cls(poll_s=poll_s)


class BatchProgress(msgspec.Struct):
    """Batch judging so far, all batch judges together (shown as lines and in the summary)."""

    batches: int = 0  # submitted by this run
    reattached: int = 0  # open batches of an earlier run, waited for by this one
    submitted: int = 0  # items sent by this run
    done: int = 0  # items answered (re-attached batches' included)
    failed: int = 0  # items failed, expired or canceled
    polling: int = 0  # batches being waited for now
    cost_usd: float = 0.0  # of the items answered, at the batch price (0: no known price)


Say = Callable[[str], None]
Key = tuple[str, Side]  # a conversation and the side asked about


class Ask(msgspec.Struct, frozen=True):
    """One batch item: a window of a question, first asked (attempt 0) or retried (1)."""

    custom_id: str
    conversation_id: str
    window: int
    attempt: int
    messages: tuple[ChatMessage, ...]
    question: Question
    side: Side = "assistant"

    def request(self) -> BatchRequest:
        return BatchRequest(self.custom_id, self.messages, self.question.params)


class Pending(msgspec.Struct):
    """A conversation this judge is asking about, and its questions."""

    job: JudgeJob
    domain: Domain
    exchanges: int
    asked: list[Question]
    generation: int  # judge failures stored for it: new ids once a failure was recorded
    active: bool = False


def custom_id(
    judge: Judge, conversation_id: str, generation: int, window: int, attempt: int, ask: object
) -> str:
    """Deterministic and what the APIs accept (letters, digits, - and _; at most 64): the same
    question about the same conversation, asked by the same judge and model, has the same id."""
    text = json.dumps(
        [judge.id, judge.gateway.label, conversation_id, generation, window, ask],
        sort_keys=True,
        default=lambda value: msgspec.to_builtins(value),
    )
    return f"q{attempt}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def first_ask(judge: Judge, pending: Pending, question: Question, window: int) -> Ask:
    messages = tuple(question.prompts[window])
    conversation_id = pending.job.scenario.scenario_id
    cid = custom_id(
        judge,
        conversation_id,
        pending.generation,
        window,
        0,
        [messages, question.params.max_tokens, question.params.json_schema],
    )
    return Ask(cid, conversation_id, window, 0, messages, question, pending.job.side)


def retry_ask(judge: Judge, pending: Pending, first: Ask, reply: str, problem: str) -> Ask:
    messages = tuple(retry_prompt(first.messages, reply, problem))
    cid = custom_id(
        judge,
        first.conversation_id,
        pending.generation,
        first.window,
        1,
        [first.custom_id, reply, problem],
    )
    return Ask(cid, first.conversation_id, first.window, 1, messages, first.question, first.side)


class BatchJudging:
    """One judge's conversations through its provider's batch API, within a judge run."""

    def __init__(
        self,
        judge: Judge,
        client: BatchClient,
        domains: Mapping[str, Domain],
        database: Database,
        sink: MemoryObjectSendStream[StoreEvent],
        run_id: str,
        settings: BatchSettings,
        counts: JudgingProgress,
        progress: BatchProgress,
        say: Say,
        clock: Clock | None = None,
        sides: Sequence[Side] = SIDES,
    ) -> None:
        self.judge = judge
        self.client = client
        self.domains = domains
        self.database = database
        self.sink = sink
        self.run_id = run_id
        self.settings = settings
        self.counts = counts
        self.progress = progress
        self.say = say
        self.clock = clock or LoopClock()
        self.sides = tuple(sides)
        self.submissions: Counter[str] = Counter()  # by this run, per custom_id
        self.exhausted: dict[str, str] = {}  # custom_id -> last error, no submission left

    async def run(self) -> None:
        judge_id = self.judge.id
        pending = await self._pending()
        requests = self._first_requests(pending)
        for record in await self.database.run(lambda conn: open_batches(conn, judge_id)):
            self.progress.reattached += 1
            self.say(
                f"{judge_id}: re-attached to batch {record.batch_id} ({record.items:,} items, "
                f"submitted {record.submitted_at:%Y-%m-%d %H:%M} UTC)"
            )
            await self._collect(record.batch_id, requests)
        while pending:
            needed = await self._resolve(pending)
            if not needed:
                break
            requests = {ask.custom_id: ask.request() for ask in needed}
            size = self.settings.max_items
            submitted = []
            for start in range(0, len(needed), size):
                submitted.append(await self._submit(needed[start : start + size], pending))
            for batch_id in submitted:
                await self._collect(batch_id, requests)

    async def _pending(self) -> dict[Key, Pending]:
        """Each side's conversations this judge has not fully assessed, keyed by
        (conversation, side)."""
        judge = self.judge
        pending: dict[Key, Pending] = {}
        for side in self.sides:
            judged = sided_plans(self.domains, side)
            if judged is not None and not judged:
                continue
            table = SIDE_TABLES[side].judge_failures
            generations = await self.database.run(
                lambda conn, table=table: judge_failure_counts(conn, judge.id, table)
            )
            jobs = unjudged_conversations(self.database, judge.id, side=side, judged_plans=judged)
            async for job in jobs:
                domain = self.domains[job.scenario.plan_id]
                exchanges, missing = missing_criteria(domain, job)
                asked = questions(judge, domain, job.scenario, job.messages, missing, side)
                cid = job.scenario.scenario_id
                generation = generations.get(cid, 0)
                pending[cid, side] = Pending(job, domain, exchanges, asked, generation)
        self.counts.waiting += len(pending)
        return pending

    def _first_requests(self, pending: Mapping[Key, Pending]) -> dict[str, BatchRequest]:
        """What each first ask of the pending conversations is (to read re-attached results)."""
        return {
            ask.custom_id: ask.request()
            for item in pending.values()
            for question in item.asked
            for ask in (
                first_ask(self.judge, item, question, w) for w in range(len(question.prompts))
            )
        }

    async def _resolve(self, pending: dict[Key, Pending]) -> list[Ask]:
        """Store every conversation whose questions are all settled; what is left to ask."""
        judge_id = self.judge.id
        keys = list(pending)
        ids = sorted({cid for cid, _ in keys})
        answered = await self.database.run(lambda conn: answered_items(conn, judge_id, ids))
        needed: list[Ask] = []
        for key in keys:
            item = pending[key]
            verdicts: list[Verdict] = []
            asks: list[Ask] = []
            for question in item.asked:
                settled, more = self._settle(item, question, answered)
                verdicts.extend(settled or [])
                asks.extend(more)
            if asks:
                needed.extend(asks)
                continue
            del pending[key]
            await self._store(item, verdicts)
        return needed

    def _settle(
        self, item: Pending, question: Question, answered: Mapping[str, ItemOutcome]
    ) -> tuple[list[Verdict] | None, list[Ask]]:
        """The question's verdicts once every window is answered (or one failed for good);
        else the items still to ask."""
        windows: list[dict[str, CriterionAnswer]] = []
        asks: list[Ask] = []
        for window in range(len(question.prompts)):
            ask = first_ask(self.judge, item, question, window)
            for _ in range(2):
                outcome = answered.get(ask.custom_id)
                if outcome is None:
                    error = self.exhausted.get(ask.custom_id)
                    if error is not None:
                        return verdicts_of(question, [], f"backend: {error}"), []
                    asks.append(ask)
                    break
                try:
                    windows.append(question.parse(outcome.reply or ""))
                    break
                except JudgeOutputError as problem:
                    if ask.attempt == 1:
                        failure = f"invalid judge output: {problem}"
                        return verdicts_of(question, [], failure), []
                    ask = retry_ask(self.judge, item, ask, outcome.reply or "", str(problem))
        if asks:
            return None, asks
        return verdicts_of(question, windows, None), []

    async def _store(self, item: Pending, verdicts: Sequence[Verdict]) -> None:
        counts = self.counts
        if item.active:
            counts.active -= 1
        else:
            counts.waiting -= 1
        event = assessment_event(self.judge, item.domain, item.job, verdicts, item.exchanges)
        counts.judged += 1
        counts.failed += len(event.judge_failures)
        counts.failed_conversations += bool(event.judge_failures)
        counts.answered += len(event.verdicts)
        await self.sink.send(event)

    async def _submit(self, asks: Sequence[Ask], pending: Mapping[Key, Pending]) -> str:
        """Send one batch and record it before anything else (a kill after this re-attaches)."""
        judge = self.judge
        requests = [ask.request() for ask in asks]
        batch_id = await self._call(lambda: self.client.submit(requests), "submitting a batch")
        assert batch_id is not None  # only a batch looked up can be unknown (None)
        rows = [
            BatchItemRow(
                ask.custom_id, ask.conversation_id, ask.question.criteria, ask.window, ask.attempt
            )
            for ask in asks
        ]
        for ask in asks:
            item = pending[ask.conversation_id, ask.side]
            if not item.active:  # taken from waiting: its questions are with the provider
                item.active = True
                self.counts.waiting -= 1
                self.counts.active += 1
        record = BatchRecord(
            batch_id, judge.id, self.client.provider, self.client.model, len(asks),
            self.run_id, utc_now(),
        )  # fmt: skip
        await self.database.run(lambda conn: record_batch(conn, record, rows))
        self.submissions.update(ask.custom_id for ask in asks)
        self.progress.batches += 1
        self.progress.submitted += len(asks)
        self.say(f"{judge.id}: submitted batch {batch_id} ({len(asks):,} items)")
        return batch_id

    async def _collect(self, batch_id: str, requests: Mapping[str, BatchRequest]) -> None:
        """Wait until the batch has ended, then record each item's outcome and its cost."""
        judge_id = self.judge.id
        self.progress.polling += 1
        try:
            status = None
            while True:
                state = await self._call(lambda: self.client.state(batch_id), "polling a batch")
                if state is None:  # the provider no longer knows it: its items are asked again
                    self.say(f"{judge_id}: batch {batch_id} is gone; its items are asked again")
                    await self.database.run(
                        lambda conn: record_batch_end(conn, batch_id, "lost", [], utc_now())
                    )
                    return
                if state.status != status:
                    status = state.status
                    self.say(
                        f"{judge_id}: batch {batch_id} {status}: {state.done:,} done, "
                        f"{state.failed:,} failed of {state.total:,}"
                    )
                if state.ended:
                    break
                await self.clock.sleep(self.settings.poll_s)
        finally:
            self.progress.polling -= 1
        ids = await self.database.run(lambda conn: batch_item_ids(conn, batch_id))
        results = await self._call(
            lambda: self.client.results(batch_id, ids, requests), "reading a batch's results"
        )
        outcomes = [self._account(result) for result in results or []]
        await self.database.run(
            lambda conn: record_batch_end(conn, batch_id, "ended", outcomes, utc_now())
        )

    def _account(self, result: ItemResult) -> ItemOutcome:
        """The item's outcome, counted into the judge's gateway stats at the batch price."""
        stats = self.judge.gateway.stats
        stats.requests += 1
        completion = result.completion
        if completion is None:
            stats.failed += 1
            self.progress.failed += 1
            error = f"batch item {result.status}: {result.error or 'no reason given'}"
            count = self.submissions[result.custom_id]
            if count >= self.settings.max_submissions:
                plural = "es" * (count != 1)
                self.exhausted[result.custom_id] = f"{error} (in {count} batch{plural})"
            return ItemOutcome(result.custom_id, result.status, error=result.error)
        stats.succeeded += 1
        stats.prompt_tokens += completion.prompt_tokens
        stats.completion_tokens += completion.completion_tokens
        stats.cache_read_tokens += completion.cache_read_tokens
        stats.cache_write_tokens += completion.cache_write_tokens
        self.progress.done += 1
        cost = None
        price = self.judge.gateway.price
        if price is not None:
            cost = usage_cost(
                price,
                completion.prompt_tokens,
                completion.completion_tokens,
                cache_read_tokens=completion.cache_read_tokens,
                cache_write_tokens=completion.cache_write_tokens,
                batch=True,
            )
            stats.cost_usd += cost
            self.progress.cost_usd += cost
        return ItemOutcome(
            result.custom_id,
            "answered",
            reply=completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cache_read_tokens=completion.cache_read_tokens,
            cache_write_tokens=completion.cache_write_tokens,
            cost_usd=cost,
        )

    async def _call(self, call: Callable[[], Awaitable[T]], doing: str) -> T | None:
        """A batch API call; transient errors are tried again after the polling interval, a
        batch the provider does not know (404) is None, anything else stops the run with one
        line (the batches stay open and are re-attached by the next run)."""
        failures = 0
        while True:
            try:
                return await call()
            except BackendError as error:
                if error.kind == "http_404" and doing != "submitting a batch":
                    return None
                failures += 1
                if not error.retryable or failures > POLL_ERRORS_TOLERATED:
                    raise ProviderUnusable(
                        f"{self.judge.gateway.label}: {doing} failed: {error.kind}: {error} "
                        "(open batches are re-attached when the same command runs again)"
                    ) from error
                await self.clock.sleep(max(self.settings.poll_s, error.retry_after_s or 0.0))
