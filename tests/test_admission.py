"""Admission (engine/admission.py) is one part, used by the gateway and by each replica of a
replica set: both keep their budgets the same way.

Waits are checked in virtual loop time (tests/clocks.py), so the numbers are exact on any
machine."""

from __future__ import annotations

import anyio
import pytest

from rapport.engine.admission import Admission
from rapport.engine.clock import LoopClock
from rapport.engine.gateway import Gateway
from rapport.engine.limits import GatewayLimits
from rapport.engine.replicas import Replica, ReplicaSet
from rapport.engine.types import ChatMessage, CompletionParams, ReportedLimits
from tests.clocks import run_in_virtual_time
from tests.test_gateway import HELLO, PARAMS, RecordingBackend


def _last_admitted(backend: Gateway | ReplicaSet, calls: int) -> float:
    async def one_after_another() -> float:
        for _ in range(calls):
            await backend.complete(HELLO, PARAMS)
        return anyio.current_time()

    return run_in_virtual_time(one_after_another)


def test_a_replica_is_charged_what_its_calls_really_used_as_a_gateway_is():
    # Each call reports 40 tokens, the first estimate is 80: a 24,000 tpm budget (400/s, a
    # 200-token bucket) admits the 40th call at 3.5 s when reconciled (see test_gateway).
    limits = GatewayLimits(tpm=24_000)
    gateway = Gateway(RecordingBackend(), limits)
    replica_set = ReplicaSet([Replica("only", RecordingBackend(), limits)])
    assert _last_admitted(gateway, 40) == pytest.approx(3.5, abs=1e-6)
    assert _last_admitted(replica_set, 40) == pytest.approx(3.5, abs=1e-6)


def test_a_replica_whose_budget_would_make_a_call_wait_counts_as_full():
    replica = Replica("slow", RecordingBackend(), GatewayLimits(rpm=60))  # one a second

    async def main() -> tuple[float, float]:
        before = replica.load()
        await replica.admission.admit(HELLO, PARAMS)
        return before, replica.load()

    assert run_in_virtual_time(main) == (0.0, float("inf"))


def test_limits_a_response_states_are_adopted_once_and_only_when_none_are_configured():
    stated = ReportedLimits(requests=1_200, tokens=90_000)
    fresh = Admission(GatewayLimits(), LoopClock(), may_state=True)
    configured = Admission(GatewayLimits(rpm=60), LoopClock(), may_state=True)
    assert fresh.metered  # counted until the provider states its limits

    async def two_429s() -> None:
        for admission in (fresh, configured):
            admission.refused("rate_limited", 0.5, stated)
            admission.refused("rate_limited", 0.5, ReportedLimits(requests=10))

    run_in_virtual_time(two_429s)
    assert (fresh.limits.rpm, fresh.limits.tpm, fresh.source) == (1_200, 90_000, "stated")
    assert (configured.limits.rpm, configured.source) == (60, "configured")


def test_a_simulated_backend_states_nothing_so_nothing_is_counted_for_it():
    assert not Admission(GatewayLimits(), LoopClock()).metered
    long_prompt = [ChatMessage("user", "x" * 10_000)]
    admission = Admission(GatewayLimits(rpm=600), LoopClock())

    async def main() -> None:
        ticket = await admission.admit(long_prompt, CompletionParams(50, 0.0))
        assert ticket.estimate is None  # the prompt's characters were never summed

    run_in_virtual_time(main)
