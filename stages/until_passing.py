"""`rapport generate --until-passing N`: play and judge until N conversations pass, with the
passing set in the plan's mix (see `engine.strata`).

Admission is strict, so the target is never overshot: a scenario starts only when its
stratum's passing conversations plus those of it in flight (admitted, not yet judged or
failed: each might pass) are below the stratum's quota. A scenario of a stratum at its quota
is skipped; one of a stratum with enough in flight waits, in plan order, while the other
strata's scenarios go on. Low-yield strata are therefore drawn more, by reading further into
the plan (scenario i still depends only on the seed and i). When no stratum has room the job
stream waits for the conversations in flight to be judged. Where a conversation stands is
read from the store (the view `conversation_passes`, the one pass rule), every
UNTIL_PASSING_REFRESH_S (longer where the read is slow); a judge that failed on it frees its
place (it does not pass in this run). A stratum's passing conversations beyond its quota (judged
after a kill when a smaller target was asked, say) are surplus: not counted toward N.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing

import anyio
import msgspec

from rapport.config.constants import (
    UNTIL_PASSING_DEFERRED_MAX,
    UNTIL_PASSING_REFRESH_FACTOR,
    UNTIL_PASSING_REFRESH_S,
)
from rapport.config.shards import Shard
from rapport.engine.budget import SpendGuard
from rapport.engine.progress import PassingProgress
from rapport.stages.jobs import plan_chunks
from rapport.store.database import Database
from rapport.store.passing import (
    Candidate,
    awaiting_judgement,
    load_candidates,
    open_conversations,
    standings,
    stratum_counts,
)
from rapport.store.plans import ScenarioDecoder, UnfinishedConversation
from rapport.store.rows import utc_now

# Stores plan indices [start, stop) of the run's shard (scenarios only), before they are read.
StoreChunk = Callable[[int, int], Awaitable[None]]
# Opens the conversation of an admitted scenario that has none yet.
OpenConversation = Callable[[UnfinishedConversation], Awaitable[None]]


class StratumOutcome(msgspec.Struct, frozen=True):
    stratum: str
    weight: float
    quota: int
    passing: int  # counted toward the target: at most the quota
    judged: int
    surplus: int  # passing beyond the quota, not counted

    @property
    def yield_share(self) -> float | None:
        return (self.passing + self.surplus) / self.judged if self.judged else None


class PassingSummary(msgspec.Struct, frozen=True):
    """Where a run's target stands at its end."""

    target: int
    passing: int  # counted: exactly `target` when reached
    judged: int
    max_draw: int  # --count: the most scenarios of the plan it may draw
    strata: tuple[StratumOutcome, ...]

    @property
    def reached(self) -> bool:
        return self.passing >= self.target

    @property
    def short(self) -> tuple[StratumOutcome, ...]:
        return tuple(s for s in self.strata if s.passing < s.quota)


def passing_summary(
    counts: Mapping[str, tuple[int, int]],
    weights: Mapping[str, float],
    quotas: Mapping[str, int],
    max_draw: int,
) -> PassingSummary:
    """The summary from per-stratum (judged, passing) counts."""
    strata = []
    for name in sorted(quotas, key=lambda n: (-weights.get(n, 0.0), n)):
        judged, passing = counts.get(name, (0, 0))
        counted = min(passing, quotas[name])
        strata.append(
            StratumOutcome(
                name, weights.get(name, 0.0), quotas[name], counted, judged, passing - counted
            )
        )
    return PassingSummary(
        target=sum(quotas.values()),
        passing=sum(s.passing for s in strata),
        judged=sum(judged for judged, _ in counts.values()),
        max_draw=max_draw,
        strata=tuple(strata),
    )


def _shortfalls(summary: PassingSummary) -> str:
    parts = []
    for s in summary.short:
        share = "no yield measured" if s.yield_share is None else f"yield {s.yield_share:.0%}"
        parts.append(f"{s.stratum} {s.passing:,} of {s.quota:,} ({share}, {s.judged:,} judged)")
    return "; ".join(parts)


def short_line(summary: PassingSummary, max_cost: float | None) -> str:
    """The strata that did not reach their quota, and how far each got."""
    limits = f"--count {summary.max_draw:,}" + (
        f" and --max-cost {max_cost:,.2f}" if max_cost is not None else ""
    )
    return (
        f"{summary.passing:,} of {summary.target:,} passing conversations: "
        f"{len(summary.short)} strata could not reach their quota within {limits}: "
        + _shortfalls(summary)
    )


def short_of_quota(summary: PassingSummary) -> str:
    """Where a run stopped by its budget left the target, for the budget's line."""
    return (
        f"{summary.passing:,} of {summary.target:,} passing conversations; "
        f"short of quota: {_shortfalls(summary)}"
    )


class PassingTarget:
    """The admission of one `--until-passing` run (see the module docstring). `jobs()` is the
    run's job stream; `judge_failed` is the judge pool's set of conversations a judge failed."""

    def __init__(
        self,
        database: Database,
        plan_id: str,
        shard: Shard,
        weights: Mapping[str, float],
        quotas: Mapping[str, int],
        max_draw: int,
        judges: int,
        *,
        both_sides: bool,
        judge_failed: set[str],
        store_chunk: StoreChunk,
        open_conversation: OpenConversation,
        include_failed: bool = False,
        guard: SpendGuard | None = None,
    ) -> None:
        self.database = database
        self.plan_id = plan_id
        self.shard = shard
        self.weights = dict(weights)
        self.quotas = dict(quotas)
        self.max_draw = max_draw
        self.judges = judges
        self.both_sides = both_sides  # the domain has a simulator rubric: the user side too
        self.judge_failed = judge_failed
        self.store_chunk = store_chunk
        self.open_conversation = open_conversation
        self.include_failed = include_failed
        self.guard = guard
        self.counts: dict[str, tuple[int, int]] = {}  # stratum: (judged, passing)
        self.in_flight: dict[str, str] = {}  # conversation id: stratum
        self._flying: Counter[str] = Counter()  # in flight per stratum
        self.progress = PassingProgress(target=sum(self.quotas.values()), strata=len(quotas))
        self._refreshed = 0.0
        self._refresh_every = UNTIL_PASSING_REFRESH_S

    def passing(self, stratum: str) -> int:
        return self.counts.get(stratum, (0, 0))[1]

    def full(self, stratum: str) -> bool:
        return self.passing(stratum) >= self.quotas.get(stratum, 0)

    def has_room(self, stratum: str) -> bool:
        flying = self._flying[stratum]
        return self.passing(stratum) + flying < self.quotas.get(stratum, 0)

    def _fly(self, conversation_id: str, stratum: str) -> None:
        self.in_flight[conversation_id] = stratum
        self._flying[stratum] += 1

    def _land(self, conversation_id: str) -> None:
        stratum = self.in_flight.pop(conversation_id, None)
        if stratum is not None:
            self._flying[stratum] -= 1

    def reached(self) -> bool:
        return all(self.full(stratum) for stratum in self.quotas)

    async def start(self) -> None:
        """What earlier runs left: their judged counts, and their complete conversations still
        unjudged (judged first by this run's pool) as in flight."""
        awaiting = await self.database.run(
            lambda conn: awaiting_judgement(
                conn, self.plan_id, self.max_draw, self.shard, both_sides=self.both_sides
            )
        )
        for conversation_id, stratum in awaiting.items():
            self._fly(conversation_id, stratum)
        await self.refresh()

    async def refresh(self) -> None:
        """Reread the per-stratum counts and where each conversation in flight stands."""
        ids = list(self.in_flight)
        began = time.monotonic()

        def read(conn):
            # Standings first: a judgement stored between the two reads is then counted as
            # passing and still in flight (too cautious for a moment), never as neither.
            now = standings(conn, ids) if ids else []
            counts = stratum_counts(
                conn, self.plan_id, self.max_draw, self.shard, both_sides=self.both_sides
            )
            return counts, now

        self.counts, now = await self.database.run(read)
        for standing in now:
            cid = standing.conversation_id
            judged = standing.judged(self.judges, self.both_sides)
            judge_failed = standing.status == "complete" and cid in self.judge_failed
            if standing.status == "failed" or judged or judge_failed:
                self._land(cid)
        self._refreshed = time.monotonic()
        # A large corpus makes the reread slower: it never takes more than a share of the
        # store's time, which the writer needs.
        took = self._refreshed - began
        self._refresh_every = max(UNTIL_PASSING_REFRESH_S, took * UNTIL_PASSING_REFRESH_FACTOR)
        self._show()

    def _show(self) -> None:
        progress = self.progress
        progress.passing = sum(min(self.passing(s), q) for s, q in self.quotas.items())
        progress.passed = sum(passing for _, passing in self.counts.values())
        progress.judged = sum(judged for judged, _ in self.counts.values())
        progress.in_flight = len(self.in_flight)
        progress.strata_full = sum(self.full(s) for s in self.quotas)
        if progress.passing_at_start is None:
            progress.passing_at_start = progress.passing

    def _stopped(self) -> bool:
        return self.reached() or (self.guard is not None and self.guard.reached)

    async def jobs(self) -> AsyncIterator[tuple[int, UnfinishedConversation]]:
        """The scenarios to play, in plan order, each admitted as described above; ends when
        the target is reached, the budget stops the run, or the first `max_draw` scenarios of
        the plan are used up. A scenario whose stratum has enough in flight waits (deferred,
        in order) for room instead of being skipped, while other strata's go on."""
        await self.start()
        async with aclosing(self._candidates()) as source:
            deferred: dict[str, deque[Candidate]] = defaultdict(deque)
            exhausted = False
            while True:
                if time.monotonic() - self._refreshed >= self._refresh_every:
                    await self.refresh()
                if self._stopped():
                    return
                if not any(self.has_room(s) for s in self.quotas):
                    await self._wait()  # the conversations in flight decide
                    continue
                candidate = next(
                    (
                        queue.popleft()
                        for s, queue in deferred.items()
                        if queue and self.has_room(s)
                    ),
                    None,
                )
                if candidate is None:
                    if exhausted:
                        if not any(q and not self.full(s) for s, q in deferred.items()):
                            return  # nothing left to draw: the run ends with what it has
                        await self._wait()  # a stratum's conversations in flight may fail
                        continue
                    candidate = await anext(source, None)
                    if candidate is None:
                        exhausted = True
                        continue
                    self.progress.drawn += 1
                    if self.full(candidate.stratum):
                        continue  # skipped: its stratum is at its quota
                    if not self.has_room(candidate.stratum):
                        queue = deferred[candidate.stratum]
                        if len(queue) < UNTIL_PASSING_DEFERRED_MAX:
                            queue.append(candidate)
                        continue
                job = candidate.job
                if candidate.status is None:
                    await self.open_conversation(job)
                self._fly(job.scenario.scenario_id, candidate.stratum)
                self.progress.in_flight = len(self.in_flight)
                yield 0, job

    async def _wait(self) -> None:
        await anyio.sleep(self._refresh_every)
        await self.refresh()

    async def _candidates(self) -> AsyncIterator[Candidate]:
        """The plan's scenarios below `max_draw` (of this shard) still to play, in order, the
        plan stored chunk by chunk as it is read."""
        decoder = ScenarioDecoder()
        done = ("complete",) if self.include_failed else ("complete", "failed")
        for start, stop in plan_chunks(self.max_draw):
            await self.store_chunk(start, stop)
            candidates = await self.database.run(
                lambda conn, start=start, stop=stop: load_candidates(
                    conn, self.plan_id, start, stop, self.shard, decoder
                )
            )
            for candidate in candidates:
                if candidate.status in done:
                    self.progress.drawn += 1
                    continue
                yield candidate


def new_conversation_opener(database: Database) -> OpenConversation:
    """Open an admitted scenario's pending conversation (see store.passing)."""

    async def open_one(job: UnfinishedConversation) -> None:
        now = utc_now()
        await database.run(lambda conn: open_conversations(conn, [job.scenario], now))

    return open_one
