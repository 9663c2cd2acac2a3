"""Limits learned when nobody configured or stated any (engine/adaptive_limits.py): the rate
from 429s, the in-flight cap from latency, and the gateway that retries 429s while it makes
progress. Everything runs in virtual loop time (tests/clocks.py): exact, repeatable figures."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import anyio
import pytest

from rapport.config.constants import TIMEOUT_RAISE_MAX
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


# ---- local servers as they are (issue 25): slow one-slot servers, many-slot queueing ones ----


class QueueingServer:
    """A local server: `slots` requests served at once, the rest queued in arrival order (never
    refused). A reply of n tokens takes `overhead_s + per_token_s × n` (times a lognormal jitter
    of `sigma`); a client that gives up at its timeout leaves the request running, holding its
    slot, as llama.cpp's server does. Notes each request's queue wait and service time."""

    provider = "local"
    model = "m"

    def __init__(
        self,
        slots: int,
        *,
        per_token_s: float,
        overhead_s: float = 0.0,
        timeout_s: float = 60.0,
        reply_tokens: Sequence[int] = (256,),
        sigma: float = 0.0,
    ) -> None:
        self.free_at = [0.0] * slots  # when each slot is next free
        self.per_token_s, self.overhead_s = per_token_s, overhead_s
        self.timeout_s = timeout_s  # the client's own (the SDK's), unless the call says another
        self.reply_tokens = reply_tokens
        self.sigma = sigma
        self.rng = random.Random(7)
        self.requests = 0
        self.served: list[tuple[float, float, float]] = []  # (arrived, queued, service)
        self.timeouts_sent: list[float] = []  # the timeout each request was sent with

    async def complete(self, messages: Sequence[ChatMessage], params: CompletionParams):
        arrived = anyio.current_time()
        tokens = min(self.reply_tokens[self.requests % len(self.reply_tokens)], params.max_tokens)
        self.requests += 1
        jitter = math.exp(self.rng.gauss(0.0, self.sigma)) if self.sigma else 1.0
        service = (self.overhead_s + self.per_token_s * tokens) * jitter
        slot = min(range(len(self.free_at)), key=self.free_at.__getitem__)
        begins = max(arrived, self.free_at[slot])
        self.free_at[slot] = begins + service
        self.served.append((arrived, begins - arrived, service))
        timeout = params.timeout_s if params.timeout_s is not None else self.timeout_s
        self.timeouts_sent.append(timeout)
        latency = begins + service - arrived
        if latency > timeout:
            await anyio.sleep(timeout)
            raise BackendError("timeout", "request timed out", retryable=True)
        await anyio.sleep(latency)
        return Completion("ok", 100, tokens, latency, self.model, self.provider)

    async def aclose(self) -> None:
        return None


LONG = CompletionParams(max_tokens=256, temperature=0.0)


def _conversations(gateway: Gateway, callers: int, calls_each: int):
    """`callers` conversations at once, each asking for `calls_each` replies of 256 tokens."""

    async def go() -> None:
        async def conversation() -> None:
            for _ in range(calls_each):
                await gateway.complete(HELLO, LONG)

        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(conversation)

    return go


def test_a_one_slot_server_twice_as_slow_as_half_the_timeout_is_never_probed_into_a_timeout():
    # 256 tokens in 7 s against a 12 s timeout: two at once would wait 14 s.
    server = QueueingServer(1, per_token_s=7 / 256, timeout_s=12.0)
    gateway = Gateway(server, max_retries=2, adaptive=True, timeout_s=12.0)
    run_in_virtual_time(_conversations(gateway, callers=8, calls_each=6))
    assert gateway.stats.timeouts == 0 and gateway.stats.retries == 0
    assert gateway.stats.succeeded == 48
    assert max(queued for _, queued, _ in server.served) == 0  # it settled at one
    assert gateway.effective_limits.max_in_flight == 1
    assert gateway.timeout_notice is None and gateway.effective_timeout_s == 12.0


def test_a_one_slot_server_with_room_in_the_timeout_is_still_probed():
    server = QueueingServer(1, per_token_s=2 / 256, timeout_s=12.0)
    gateway = Gateway(server, adaptive=True, timeout_s=12.0)
    run_in_virtual_time(_conversations(gateway, callers=8, calls_each=6))
    assert max(queued for _, queued, _ in server.served) > 0  # two at once, now and then
    assert gateway.stats.timeouts == 0


def test_a_timeout_shorter_than_one_reply_is_raised_to_fit_said_once_and_fails_nothing():
    # A 256-token reply takes 15 s against a 12 s timeout (the case on a busy machine).
    server = QueueingServer(1, per_token_s=14 / 256, overhead_s=1.0, timeout_s=12.0)
    gateway = Gateway(server, max_retries=2, adaptive=True, timeout_s=12.0)
    run_in_virtual_time(_conversations(gateway, callers=8, calls_each=2))
    assert gateway.stats.succeeded == 16 and gateway.stats.failed == 0
    assert gateway.stats.retries <= 2  # the first request alone ran past 12 s, and only it
    assert gateway.stats.backpressure_timeouts == gateway.stats.timeouts
    assert 15.0 < gateway.effective_timeout_s <= 12.0 * TIMEOUT_RAISE_MAX
    assert server.timeouts_sent[-1] == gateway.effective_timeout_s  # it reached the request
    notice = gateway.timeout_notice
    bound = f"at most {TIMEOUT_RAISE_MAX:g}× timeout_s = {12.0 * TIMEOUT_RAISE_MAX:g} s"
    assert notice is not None and "timeout_s 12 s" in notice and bound in notice


def test_a_many_slot_server_is_kept_full_without_filling_its_queue():
    # 16 slots, 400 ms a request (jittered), never a 429: 40 requests/s at most.
    server = QueueingServer(16, per_token_s=0.4 / 256, sigma=0.25)
    gateway = Gateway(server, adaptive=True, timeout_s=60.0)

    async def go() -> None:
        async def conversation() -> None:
            while True:
                await gateway.complete(HELLO, LONG)

        with anyio.move_on_after(60.0):
            async with anyio.create_task_group() as group:
                for _ in range(64):
                    group.start_soon(conversation)

    run_in_virtual_time(go)
    settled = [(queued, service) for arrived, queued, service in server.served if arrived >= 10]
    throughput = len(settled) / 50.0
    mean_service = sum(service for _, service in settled) / len(settled)
    mean_queued = sum(queued for queued, _ in settled) / len(settled)
    assert throughput >= 0.9 * 16 / mean_service
    assert mean_queued <= 0.5 * mean_service
    assert gateway.stats.timeouts == 0


def test_a_server_that_times_out_every_request_stops_the_run_saying_so():
    server = QueueingServer(1, per_token_s=1.0, timeout_s=2.0)  # 256 s a reply: never in time
    gateway = Gateway(server, max_retries=2, adaptive=True, timeout_s=2.0, no_success_stop_s=60)

    async def go() -> tuple[float, str]:
        with anyio.move_on_after(3600):
            try:
                await gateway.complete(HELLO, LONG)
            except RateLimitedTooLong as stop:
                return anyio.current_time(), str(stop)
        raise AssertionError("a server that never answers in time must stop the run")

    stopped_at, message = run_in_virtual_time(go)
    bound = 2.0 * TIMEOUT_RAISE_MAX  # every attempt alone: the timeout raised to its bound
    assert 60.0 <= stopped_at <= 60.0 + 2 * 30.0 + bound  # (a last backoff and attempt)
    assert f"timed out after {bound:g} s" in message and "429" not in message
    assert server.requests > 3  # far past max_retries: a timeout here is backpressure
    assert gateway.stats.failed == 0


def test_the_cap_grows_only_while_one_more_request_fits_the_timeout():
    async def go(timeout_s: float) -> int | None:
        limits = AdaptiveLimits(LoopClock(), timeout_s=timeout_s)
        for _ in range(12):
            limits.on_success(7.0, rate_bound=False)  # flat latency: it would grow
        return limits.in_flight

    assert run_in_virtual_time(go, 12.0) == 1  # 7 s × 2 / 1 does not fit 12 s
    grown = run_in_virtual_time(go, 60.0)
    assert grown is not None and grown > 1


def test_service_time_is_fitted_from_replies_served_alone():
    from rapport.engine.service_time import ServiceTime

    service = ServiceTime()
    assert service.longest_s(256) is None
    for tokens in (20, 80, 140, 256, 60):
        service.observe(0.5 + 0.05 * tokens, tokens)
    assert service.longest_s(256) == pytest.approx(0.5 + 0.05 * 256)
    cut = ServiceTime()
    for latency in (14.0, 15.0, 16.0):  # every reply cut at 256 tokens: time per token
        cut.observe(latency, 256)
    assert cut.longest_s(256) == pytest.approx(15.0)


def test_the_live_display_says_once_that_the_timeout_was_raised():
    from rich.console import Console

    from rapport._live_table import progress_table
    from rapport.config.prices import PriceTable
    from rapport.engine.progress import RunProgress

    server = QueueingServer(1, per_token_s=14 / 256, overhead_s=1.0, timeout_s=12.0)
    gateway = Gateway(server, adaptive=True, timeout_s=12.0)
    run_in_virtual_time(_conversations(gateway, callers=2, calls_each=2))
    console = Console(width=400, record=True)
    console.print(progress_table(RunProgress(total=2), {"assistant": gateway}, PriceTable({})))
    shown = " ".join(console.export_text().split())
    assert shown.count(gateway.timeout_notice) == 1
    assert f"timeout {gateway.effective_timeout_s:.0f} s (raised)" in shown
    assert "in flight (learned)" in shown
