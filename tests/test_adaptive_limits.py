"""Limits learned when nobody configured or stated any (engine/adaptive_limits.py): the rate
from 429s, the in-flight cap from latency, and the gateway that retries 429s while it makes
progress. Everything runs in virtual loop time (tests/clocks.py): exact, repeatable figures."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from rapport.engine.adaptive_limits import AdaptiveLimits
from rapport.engine.clock import LoopClock
from rapport.engine.errors import BackendError, RateLimitedTooLong
from rapport.engine.gateway import Gateway
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from tests.clocks import run_in_virtual_time
from tests.test_gateway import RecordingBackend

PARAMS = CompletionParams(max_tokens=50, temperature=0.0)
HELLO = [ChatMessage("user", "hello")]


async def _served(limits: AdaptiveLimits, per_second: int, seconds: float, latency_s=0.4):
    """Answers at a steady pace, each with the same latency."""
    for _ in range(int(per_second * seconds)):
        await anyio.sleep(1 / per_second)
        limits.on_success(latency_s, rate_bound=False)


def test_a_429_shrinks_the_rate_and_the_in_flight_cap_together():
    async def go() -> tuple[float | None, int | None, int | None]:
        limits = AdaptiveLimits(LoopClock())
        await _served(limits, per_second=20, seconds=3)  # 1,200 served a minute, flat latency
        grown = limits.in_flight
        limits.on_rate_limited()
        return limits.rpm, grown, limits.in_flight

    rpm, grown, in_flight = run_in_virtual_time(go)
    assert grown is not None and grown >= 16  # flat latency: the cap grew while it could
    assert rpm == pytest.approx(0.9 * 1200, rel=0.02)  # just under what was really served
    assert in_flight == int(grown * 0.7)


def test_429s_of_one_episode_back_off_once():
    async def go() -> list[float | None]:
        limits = AdaptiveLimits(LoopClock())
        await _served(limits, per_second=20, seconds=2)
        seen = []
        for _ in range(5):  # the requests that were in flight together all come back 429
            limits.on_rate_limited()
            seen.append(limits.rpm)
        return seen

    first, *rest = run_in_virtual_time(go)
    assert rest == [first] * 4


def test_successes_probe_the_rate_upwards_only_while_it_holds_requests_back():
    async def go() -> tuple[float, float, float]:
        limits = AdaptiveLimits(LoopClock())
        await _served(limits, per_second=10, seconds=2)
        limits.on_rate_limited()
        assert limits.rpm is not None
        after_429 = limits.rpm
        for _ in range(30):
            limits.on_success(0.4, rate_bound=False)
        idle = limits.rpm
        for _ in range(30):
            limits.on_success(0.4, rate_bound=True)
        return after_429, idle, limits.rpm

    after_429, idle, probed = run_in_virtual_time(go)
    assert idle == after_429
    assert probed >= after_429 + 30  # at least a step a success (more, far from the limit)


def test_the_rate_is_not_limited_before_the_first_429():
    limits = AdaptiveLimits(LoopClock())
    assert limits.rpm is None and limits.current().rpm is None


def test_sporadic_429s_never_take_the_rate_below_half_the_best_served():
    async def go() -> float | None:
        limits = AdaptiveLimits(LoopClock())
        await _served(limits, per_second=20, seconds=2)  # about 1,200 served
        for _ in range(40):  # an "overloaded" 429 every second and a half, whatever the rate
            assert limits.rpm is None or limits.rpm > 0
            limits.on_rate_limited()
            assert limits.rpm is not None
            pace = limits.rpm / 60
            for _ in range(int(1.5 * pace)):
                await anyio.sleep(1 / pace)
                limits.on_success(0.4, rate_bound=True)
        return limits.rpm

    rpm = run_in_virtual_time(go)
    assert rpm is not None and rpm >= 0.5 * 1200 * 0.5 ** (62 / 60) - 1


def test_latency_that_grows_with_load_shrinks_the_in_flight_cap():
    async def go() -> tuple[int | None, int | None, int | None]:
        limits = AdaptiveLimits(LoopClock())
        for _ in range(3):
            limits.on_success(1.0, rate_bound=False)  # alone: 1 s, the baseline
        alone = limits.in_flight
        limits.on_success(1.0, rate_bound=False)  # latency is flat: probe a second one
        probing = limits.in_flight
        for _ in range(3):
            limits.on_success(2.0, rate_bound=False)  # two at once on one slot: queued
        return alone, probing, limits.in_flight

    assert run_in_virtual_time(go) == (1, 2, 1)


def test_a_timeout_shrinks_the_in_flight_cap():
    async def go() -> tuple[int | None, int | None]:
        limits = AdaptiveLimits(LoopClock())
        await _served(limits, per_second=20, seconds=2)
        grown = limits.in_flight
        limits.on_timeout()
        return grown, limits.in_flight

    grown, after = run_in_virtual_time(go)
    assert grown is not None and after == int(grown * 0.7)


class SlotServer:
    """A server with `slots` request slots: requests beyond them queue, each takes
    `service_s`. Notes how many requests were in flight whenever one arrived."""

    provider = "slots"
    model = "m"
    simulated = False

    def __init__(self, slots: int, service_s: float = 1.0) -> None:
        self._slots = anyio.Semaphore(slots)
        self.service_s = service_s
        self.active = 0
        self.seen_active: list[int] = []

    async def complete(self, messages: Sequence[ChatMessage], params: CompletionParams):
        self.active += 1
        self.seen_active.append(self.active)
        started = anyio.current_time()
        try:
            async with self._slots:
                await anyio.sleep(self.service_s)
        finally:
            self.active -= 1
        return Completion("ok", 10, 10, anyio.current_time() - started, self.model, "slots")

    async def aclose(self) -> None:
        return None


def _callers(gateway: Gateway, callers: int, calls_each: int):
    async def go() -> None:
        async def caller() -> None:
            for _ in range(calls_each):
                await gateway.complete(HELLO, PARAMS)

        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(caller)

    return go


def test_a_one_slot_server_gets_about_one_request_at_a_time():
    server = SlotServer(slots=1)
    gateway = Gateway(server, adaptive=True)
    run_in_virtual_time(_callers(gateway, callers=32, calls_each=4))
    settled = server.seen_active[20:]
    assert max(settled) <= 2  # never the 32 callers at once
    assert sum(settled) / len(settled) <= 1.5


def test_a_server_with_many_slots_gets_dozens_at_a_time():
    server = SlotServer(slots=64)
    gateway = Gateway(server, adaptive=True)
    run_in_virtual_time(_callers(gateway, callers=48, calls_each=10))
    assert max(server.seen_active) >= 32
    assert gateway.effective_limits.max_in_flight is not None
    assert gateway.effective_limits.max_in_flight >= 32


class RateLimitedFirst:
    """Answers 429 (asking for `retry_after_s`) to its first `limited` calls."""

    provider = "limited"
    model = "m"
    simulated = False

    def __init__(self, limited: int, retry_after_s: float | None = 0.25) -> None:
        self.limited = limited
        self.retry_after_s = retry_after_s
        self.started_at: list[float] = []

    async def complete(self, messages: Sequence[ChatMessage], params: CompletionParams):
        self.started_at.append(anyio.current_time())
        if len(self.started_at) <= self.limited:
            raise BackendError(
                "rate_limited", "429", retryable=True, retry_after_s=self.retry_after_s
            )
        return Completion("ok", 10, 10, 0.0, self.model, self.provider)

    async def aclose(self) -> None:
        return None


def test_a_429_is_retried_past_the_attempt_cap_and_its_wait_honoured():
    backend = RateLimitedFirst(limited=8, retry_after_s=0.25)
    gateway = Gateway(backend, max_retries=2, backoff_min_s=0.01, adaptive=True)
    completion = run_in_virtual_time(gateway.complete, HELLO, PARAMS)
    assert completion.attempts == 9 and gateway.stats.failed == 0
    gaps = [b - a for a, b in zip(backend.started_at, backend.started_at[1:], strict=False)]
    assert min(gaps) >= 0.25  # every retry waited what the provider asked for
    assert completion.latency_s >= 8 * 0.25  # the turn's latency spans every attempt


def test_a_provider_answering_only_429_stops_the_run_after_the_no_success_bound():
    backend = RateLimitedFirst(limited=10**9, retry_after_s=1.0)
    gateway = Gateway(backend, max_retries=2, adaptive=True, no_success_stop_s=30.0)

    async def go() -> float:
        with anyio.move_on_after(3600):  # (virtual time: a broken bound fails, not hangs)
            try:
                await gateway.complete(HELLO, PARAMS)
            except RateLimitedTooLong:
                return anyio.current_time()
        raise AssertionError("a provider that only answers 429 must stop the run")

    stopped_at = run_in_virtual_time(go)
    assert 30.0 <= stopped_at <= 32.0
    assert len(backend.started_at) > 3  # far past max_retries: 429s are not failures


def test_a_learned_rate_retuned_while_callers_wait_lets_only_the_new_rate_through():
    backend = RecordingBackend(latency_s=0.4, rate_limited_calls={60})
    gateway = Gateway(backend, adaptive=True)
    run_in_virtual_time(_callers(gateway, callers=40, calls_each=12))
    learned = gateway.effective_limits.rpm
    assert learned is not None  # the 429 set a rate, raised since by successes
    limited_at = backend.started_at[59]
    later = sorted(t for t in backend.started_at if t > limited_at + 2)
    span = later[-1] - later[0]
    # Never the old bucket and the new one at once: at most the highest rate (plus a burst).
    assert len(later) <= learned / 60 * span + learned / 120 + 1


class TimesOutFirst:
    """Its first call hangs `timeout_s` and times out; later calls answer in 0.1 s."""

    provider = "slow"
    model = "m"
    simulated = False

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.calls = 0

    async def complete(self, messages: Sequence[ChatMessage], params: CompletionParams):
        self.calls += 1
        if self.calls == 1:
            await anyio.sleep(self.timeout_s)
            raise BackendError("timeout", "request timed out", retryable=True)
        await anyio.sleep(0.1)
        return Completion("ok", 10, 10, 0.1, self.model, self.provider)

    async def aclose(self) -> None:
        return None


def test_a_timed_out_attempt_counts_its_full_time_in_the_latencies():
    gateway = Gateway(TimesOutFirst(timeout_s=15.0), max_retries=2, backoff_min_s=0.01)
    completion = run_in_virtual_time(gateway.complete, HELLO, PARAMS)
    assert completion.attempts == 2 and completion.latency_s >= 15.1
    assert sorted(gateway.stats.latencies_s) == pytest.approx([0.1, 15.0], abs=1e-3)
