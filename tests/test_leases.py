"""Leased budgets (engine/leases.py), in one process: what the Ray workers use to share one
provider limit. No Ray here: the keeper is a plain object, as it is inside its actor."""

from __future__ import annotations

import anyio
import pytest

from rapport.engine.backends.null_backend import NullBackend
from rapport.engine.errors import BackendError
from rapport.engine.gateway import Gateway, GatewayLimits
from rapport.engine.leases import (
    LEASE_S,
    BudgetKeeper,
    Grant,
    LeasedBudget,
    PauseBoard,
    PauseReporting,
    budget_key,
    budget_spec,
    lease_budgets,
)
from rapport.engine.limits import MinuteBudget
from rapport.engine.types import ChatMessage, CompletionParams

RPM = 6_000


def test_workers_together_lease_what_they_spend_plus_at_most_one_slice_each():
    keeper = BudgetKeeper({"api": {"requests": RPM}})
    budgets = [LeasedBudget(keeper, "api", "requests", RPM, 2, PauseBoard()) for _ in range(2)]
    calls = (50, 10)  # unevenly loaded

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for budget, count in zip(budgets, calls, strict=True):
                for _ in range(count):
                    group.start_soon(budget.acquire, 1)

    anyio.run(main)
    leased = keeper.granted["api/requests"]
    one_slice = RPM * LEASE_S / 60
    assert sum(calls) <= leased <= sum(calls) + 2 * one_slice
    assert not any(budget.fell_back for budget in budgets)


class _Gone:
    async def lease(self, key: str, unit: str, amount: float) -> Grant:
        raise ConnectionError("the keeper's node is gone")

    async def pause(self, key: str, seconds: float) -> None:
        raise ConnectionError("the keeper's node is gone")


def test_an_unreachable_keeper_leaves_each_worker_its_static_share():
    budget = LeasedBudget(_Gone(), "api", "requests", 1_200, 4, PauseBoard())
    anyio.run(budget.acquire, 1)
    assert budget.fell_back
    assert budget.capacity == MinuteBudget(1_200 // 4).capacity


class _Refusing(NullBackend):
    async def complete(self, messages, params):
        raise BackendError("rate_limited", "429", retryable=True, retry_after_s=30.0)


def test_a_429_in_one_worker_holds_every_worker_s_next_lease():
    keeper = BudgetKeeper({"api": {"requests": RPM}})
    seen_by_one = PauseBoard()
    refusing = PauseReporting(_Refusing(), keeper, "api", seen_by_one)
    other = LeasedBudget(keeper, "api", "requests", RPM, 2, PauseBoard())
    leased: list[bool] = []

    async def main() -> None:
        with pytest.raises(BackendError):
            await refusing.complete(
                [ChatMessage("user", "hi")], CompletionParams(max_tokens=8, temperature=0.0)
            )
        with anyio.move_on_after(0.2):  # the pause asked for is 30 s: no lease meanwhile
            await other.acquire(1)
            leased.append(True)

    anyio.run(main)
    assert seen_by_one.until > 0  # the worker that saw it pauses at once
    assert 29 < keeper.pause_left("api") <= 30  # and the keeper, for every worker
    assert leased == [] and keeper.granted == {}


def test_a_gateway_spends_leases_of_its_configured_limits_and_reports_its_429s():
    gateway = Gateway(NullBackend(), GatewayLimits(rpm=600, tpm=90_000))
    keeper = BudgetKeeper({})
    lease_budgets({"user_sim": gateway, "assistant": gateway}, keeper, workers=3)
    assert budget_spec({"user_sim": gateway}) == {
        budget_key(gateway): {"requests": 600, "tokens": 90_000}
    }
    assert isinstance(gateway.admission.budgets["requests"], LeasedBudget)
    assert isinstance(gateway.backend, PauseReporting)
    assert gateway.backend.model == NullBackend().model  # everything else passes through
