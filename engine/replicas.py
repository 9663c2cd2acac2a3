"""Several endpoints behind one backend: server replicas (vLLM, llama.cpp servers) or several
API keys of one provider. Each replica has its own client, limits, in-flight cap, health and
counters; a call goes to the least-loaded healthy one and, when that one fails or answers 429,
to the next. The gateway above sees a failure only when every replica failed the call, so
one replica's 429 pauses that replica, not the whole backend.

A replica that fails (connection, timeout, 5xx, broken body) is taken out for a backoff that
doubles with each failure in a row; once the backoff has passed it gets calls again, and its
first success puts it fully back.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from rapport.engine.accounting import GatewayStats, count_completion
from rapport.engine.admission import Admission
from rapport.engine.backend import Backend
from rapport.engine.clock import Clock, LoopClock
from rapport.engine.errors import BackendError
from rapport.engine.limits import GatewayLimits
from rapport.engine.types import ChatMessage, Completion, CompletionParams

DOWN_BACKOFF_MIN_S = 0.5
DOWN_BACKOFF_MAX_S = 30.0
RATE_LIMITED_PAUSE_S = 1.0  # a 429 that names no wait


class ReplicaStats(GatewayStats):
    """One replica's counters (a gateway's, of which it never retries nor times out on its
    own: the gateway above does), stored as its own `gateway_stats` row (`endpoint`)."""

    taken_out: int = 0  # times it was marked down


class Replica:
    """One endpoint: its backend, its own admission (budgets and cap, engine/admission.py; a
    429 takes the replica out rather than pausing its callers), whether it is up."""

    def __init__(self, name: str, backend: Backend, limits: GatewayLimits) -> None:
        self.name = name  # a base URL or `key:<ENV_NAME>`: never a key itself
        self.backend = backend
        self.limits = limits
        self.stats = ReplicaStats()
        self.admission = Admission(limits, LoopClock())  # (no pause: its clock is never read)
        self.unavailable_until = 0.0  # down (failures) or paused (429) until then
        self.failures_in_a_row = 0

    def load(self) -> float:
        """Share of its cap in use (calls in flight without a cap); a replica whose budget
        would make the call wait counts as full."""
        if self.admission.would_wait():
            return float("inf")
        cap = self.limits.max_in_flight
        return self.stats.in_flight / cap if cap else float(self.stats.in_flight)


class ReplicaSet:
    """A Backend over several replicas of one model (see the module's docstring)."""

    base_url = None  # the gateway's name; each replica's own is in `replicas`

    def __init__(self, replicas: Sequence[Replica], *, clock: Clock | None = None) -> None:
        if not replicas:
            raise ValueError("a replica set needs at least one replica")
        self.replicas = list(replicas)
        first = self.replicas[0].backend
        self.provider = first.provider
        self.model = first.model
        self._clock = clock or LoopClock()
        self._turn = 0  # ties in load go round the replicas

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        tried: set[int] = set()
        last_error: BackendError | None = None
        while len(tried) < len(self.replicas):
            index = self._choose(tried)
            if index is None:
                break
            tried.add(index)
            replica = self.replicas[index]
            try:
                completion = await self._call(replica, messages, params)
            except BackendError as error:
                error.limits = None  # (as above)
                if not error.retryable:
                    raise
                last_error = error
                continue
            # A replica's rate-limit headers state its own limits, not the whole set's.
            return msgspec.structs.replace(completion, limits=None)
        raise self._all_failed(last_error)

    def _choose(self, tried: set[int]) -> int | None:
        """The least-loaded replica not tried yet for this call: up ones first; when none is
        up, the one back soonest (a call never waits for nothing)."""
        now = self._clock.now()
        candidates = [i for i in range(len(self.replicas)) if i not in tried]
        if not candidates:
            return None
        up = [i for i in candidates if self.replicas[i].unavailable_until <= now]
        if not up:
            return (
                None if tried else min(candidates, key=lambda i: self.replicas[i].unavailable_until)
            )
        self._turn += 1
        count = len(self.replicas)
        return min(up, key=lambda i: (self.replicas[i].load(), (i - self._turn) % count))

    async def _call(
        self,
        replica: Replica,
        messages: Sequence[ChatMessage],
        params: CompletionParams,
    ) -> Completion:
        wait = replica.unavailable_until - self._clock.now()
        if wait > 0:  # every replica is out: wait for the one back soonest
            await self._clock.sleep(wait)
        slots = replica.admission.slots
        if slots is None:
            return await self._admitted(replica, messages, params)
        async with slots:
            return await self._admitted(replica, messages, params)

    async def _admitted(
        self,
        replica: Replica,
        messages: Sequence[ChatMessage],
        params: CompletionParams,
    ) -> Completion:
        ticket = await replica.admission.admit(messages, params)
        stats = replica.stats
        stats.requests += 1
        stats.in_flight += 1
        try:
            completion = await replica.backend.complete(messages, params)
        except BackendError as error:
            self._note_failure(replica, error)
            raise
        finally:
            stats.in_flight -= 1
        replica.failures_in_a_row = 0
        replica.unavailable_until = 0.0
        replica.admission.settle(ticket, completion)
        return count_completion(stats, completion)

    def _note_failure(self, replica: Replica, error: BackendError) -> None:
        stats = replica.stats
        now = self._clock.now()
        if error.kind == "rate_limited":
            stats.rate_limited += 1
            pause = error.retry_after_s if error.retry_after_s is not None else None
            replica.unavailable_until = now + (pause or RATE_LIMITED_PAUSE_S)
            return
        stats.failed += 1
        if not error.retryable:
            return  # the request was refused, not the replica
        replica.failures_in_a_row += 1
        stats.taken_out += 1
        backoff = DOWN_BACKOFF_MIN_S * 2 ** (replica.failures_in_a_row - 1)
        replica.unavailable_until = now + min(DOWN_BACKOFF_MAX_S, backoff)

    def _all_failed(self, last_error: BackendError | None) -> BackendError:
        """What the gateway sees when no replica could answer: a 429 if every replica is
        paused for one (with the shortest wait), else the last failure."""
        now = self._clock.now()
        soonest = min(replica.unavailable_until for replica in self.replicas) - now
        if last_error is not None and last_error.kind == "rate_limited":
            rate_limited = all(
                replica.unavailable_until > now and replica.failures_in_a_row == 0
                for replica in self.replicas
            )
            if rate_limited:
                return BackendError(
                    "rate_limited",
                    f"every replica answered 429 ({last_error})",
                    retryable=True,
                    retry_after_s=max(0.0, soonest),
                )
        if last_error is not None:
            return last_error
        return BackendError(
            "connection",
            "every replica is out after failures",
            retryable=True,
            retry_after_s=max(0.0, soonest),
        )

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.backend.aclose()
