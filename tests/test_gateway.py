"""The gateway: budgets, reconciliation, in-flight cap, the shared pause on 429, learned limits,
and a provider that is down.

Waits are checked in virtual loop time (tests/clocks.py), so the numbers are exact on any
machine; how fast the gateway really is lives in `rapport bench throughput`."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from rapport.engine.backends.openai_backend import OpenAIBackend
from rapport.engine.errors import BackendError, ProviderUnreachable
from rapport.engine.gateway import Gateway, GatewayLimits
from rapport.engine.limits import MinuteBudget, TokenEstimator
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from tests.clocks import RecordingClock, run_in_virtual_time

PARAMS = CompletionParams(max_tokens=50, temperature=0.0)
HELLO = [ChatMessage("user", "hello " * 20)]


class RecordingBackend:
    """Counts concurrent calls, notes the loop time each call starts, and can answer 429 on
    chosen calls."""

    provider = "recording"
    model = "m"

    def __init__(self, latency_s: float = 0.0, rate_limited_calls: set[int] | None = None) -> None:
        self.latency_s = latency_s
        self.rate_limited_calls = rate_limited_calls or set()
        self.calls = 0
        self.active = 0
        self.most_active = 0
        self.started_at: list[float] = []

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        self.calls += 1
        number = self.calls
        self.started_at.append(anyio.current_time())
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await anyio.sleep(self.latency_s)
        finally:
            self.active -= 1
        if number in self.rate_limited_calls:
            raise BackendError("rate_limited", "429", retryable=True, retry_after_s=0.3)
        return Completion("ok", 30, 10, self.latency_s, self.model, self.provider)

    async def aclose(self) -> None:
        return None


async def _many(gateway: Gateway, calls: int) -> None:
    async with anyio.create_task_group() as group:
        for _ in range(calls):
            group.start_soon(gateway.complete, HELLO, PARAMS)


def test_requests_per_minute_are_spread_over_the_minute():
    backend = RecordingBackend()
    gateway = Gateway(backend, GatewayLimits(rpm=600))  # 10 per second, half a second's burst
    run_in_virtual_time(_many, gateway, 25)
    # 5 at once (the burst), then one every 0.1 s: never a minute's 600 in one go.
    expected = [0.0] * 5 + [0.1 * n for n in range(1, 21)]
    assert backend.started_at == pytest.approx(expected, abs=1e-6)
    assert gateway.stats.succeeded == 25


def test_in_flight_cap_is_never_exceeded():
    backend = RecordingBackend(latency_s=0.02)
    gateway = Gateway(backend, GatewayLimits(max_in_flight=3))
    run_in_virtual_time(_many, gateway, 30)
    assert backend.most_active == 3 and backend.calls == 30


def test_a_429_pauses_every_caller_of_the_gateway():
    backend = RecordingBackend(latency_s=0.01, rate_limited_calls={1})
    gateway = Gateway(backend, max_retries=3, backoff_min_s=0.01, backoff_max_s=0.02)

    async def go() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(gateway.complete, HELLO, PARAMS)
            await anyio.sleep(0.05)  # the first call was answered 429 at 0.01 (retry after 0.3 s)
            for _ in range(5):
                group.start_soon(gateway.complete, HELLO, PARAMS)

    run_in_virtual_time(go)
    pause_ends = 0.01 + 0.3
    later = sorted(backend.started_at[1:])
    assert len(later) == 6 and backend.started_at[0] == pytest.approx(0.0, abs=1e-6)
    # Nobody called during the pause; the five newcomers resumed the moment it ended, the
    # first caller after its own retry wait (the pause plus at most backoff_min_s of jitter).
    assert later[:5] == pytest.approx([pause_ends] * 5, abs=1e-6), later
    assert pause_ends - 1e-6 <= later[5] <= pause_ends + 0.01 + 1e-6, later
    assert gateway.stats.rate_limited == 1 and gateway.stats.succeeded == 6


def test_token_estimates_learn_from_usage():
    estimator = TokenEstimator()
    first = estimator.estimate(400, max_tokens=100)
    assert first.prompt == pytest.approx(100) and first.completion == 100
    for _ in range(60):
        estimator.learn(prompt_chars=400, prompt_tokens=200, completion_tokens=20)
    later = estimator.estimate(400, max_tokens=100)
    assert later.prompt == pytest.approx(200, rel=0.05)
    assert later.completion == pytest.approx(20, rel=0.05)


def test_token_budget_is_charged_what_calls_really_used():
    backend = RecordingBackend()  # reports 40 tokens a call; the first estimate is 80
    gateway = Gateway(backend, GatewayLimits(tpm=24_000))  # 400/s, a 200-token bucket

    async def one_after_another() -> float:
        for _ in range(40):
            await gateway.complete(HELLO, PARAMS)
        return anyio.current_time()

    last_admitted = run_in_virtual_time(one_after_another)
    # 1,600 tokens really used, 200 of them in the first bucket: the rest drain at 400/s, so
    # the last call goes at 3.5 s. Charging the estimates without reconciling (3,200 tokens)
    # would take 7.5 s; dropping the estimate's overcharge on the first call, 3.6 s.
    assert last_admitted == pytest.approx(3.5, abs=1e-6)
    assert gateway.stats.prompt_tokens + gateway.stats.completion_tokens == 1_600


def test_minute_budget_takes_large_amounts_in_parts():
    budget = MinuteBudget(6_000)  # 100/s, 50 per bucket

    async def go() -> float:
        await budget.acquire(150)
        return anyio.current_time()

    # 50 at once, then two more buckets' worth at 100/s.
    assert run_in_virtual_time(go) == pytest.approx(1.0, abs=1e-6)


def test_limits_are_learned_from_rate_limit_headers():
    with running_fake_provider(FakeProviderSettings(rpm=1200, tpm=90_000)) as (base_url, _):
        backend = OpenAIBackend(model="m", api_key="k", base_url=base_url, timeout_s=5)
        gateway = Gateway(backend)

        async def go() -> None:
            await gateway.complete(HELLO, PARAMS)
            await gateway.aclose()

        anyio.run(go)
    assert gateway.limits.rpm == 1200 and gateway.limits.tpm == 90_000


def test_configured_limits_win_over_headers():
    with running_fake_provider(FakeProviderSettings(rpm=1200)) as (base_url, _):
        backend = OpenAIBackend(model="m", api_key="k", base_url=base_url, timeout_s=5)
        gateway = Gateway(backend, GatewayLimits(rpm=60))

        async def go() -> None:
            await gateway.complete(HELLO, PARAMS)
            await gateway.aclose()

        anyio.run(go)
    assert gateway.limits.rpm == 60


def test_a_provider_that_is_down_fails_fast():
    backend = OpenAIBackend(model="m", api_key="k", base_url="http://127.0.0.1:9/v1", timeout_s=5)
    clock = RecordingClock()
    gateway = Gateway(backend, max_retries=8, backoff_min_s=0.01, backoff_max_s=0.05, clock=clock)

    async def go() -> None:
        await gateway.complete(HELLO, PARAMS)

    with pytest.raises(ProviderUnreachable) as caught:
        anyio.run(go)
    assert "cannot reach" in str(caught.value)
    # Given up after two refused connections and a backoff after each, not nine attempts.
    assert gateway.stats.requests == 2 and len(clock.sleeps) == 2
