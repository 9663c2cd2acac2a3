"""Budgets leased from one keeper, so several processes share one provider limit.

Each process's gateway normally owns its endpoint's whole per-minute budget (engine/limits.py).
When N workers call the same endpoint, a `BudgetKeeper` holds the one budget and each worker's
`LeasedBudget` takes it in leases — a small slice (`LEASE_S` of the rate) at a time, spent
locally and void after `LEASE_TTL_S` — so together they stay under the provider's limit however
unevenly they are loaded, and an idle worker holds back at most one slice. A 429 seen by one
worker is reported to the keeper, which pauses every worker's next lease; a worker that cannot
reach the keeper falls back to its static share (limit / N).

Nothing here knows about Ray: the keeper is a plain asyncio object (a Ray actor wraps it in
rapport.cluster), and any `LeaseBroker` works, in-process ones included.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import anyio
import msgspec

from rapport.config.constants import LEASE_S, LEASE_TIMEOUT_S, LEASE_TTL_S
from rapport.engine.accounting import gateway_name
from rapport.engine.errors import BackendError
from rapport.engine.gateway import Gateway
from rapport.engine.limits import GatewayLimits, MinuteBudget
from rapport.engine.types import ChatMessage, Completion, CompletionParams

BudgetSpec = dict[str, dict[str, int]]  # budget key -> unit -> per minute


class Grant(msgspec.Struct, frozen=True):
    """A lease: `amount` of a unit, to spend within LEASE_TTL_S; `pause_s` is the pause still
    to wait (a 429 some worker saw), which the lessee honours before spending."""

    amount: float
    pause_s: float = 0.0


class LeaseBroker(Protocol):
    async def lease(self, key: str, unit: str, amount: float) -> Grant: ...

    async def pause(self, key: str, seconds: float) -> None: ...


class BudgetKeeper:
    """The one budget per endpoint key and unit, handing out leases in arrival order (each
    waits until its amount has drained through, like one process's MinuteBudget)."""

    def __init__(self, budgets: BudgetSpec) -> None:
        self._budgets = {
            key: {unit: MinuteBudget(per_minute) for unit, per_minute in units.items()}
            for key, units in budgets.items()
        }
        self._paused_until: dict[str, float] = {}
        self.granted: dict[str, float] = {}  # key/unit -> total leased (tests, stats)

    async def lease(self, key: str, unit: str, amount: float) -> Grant:
        await self._wait_out_pause(key)
        budget = self._budgets.get(key, {}).get(unit)
        if budget is not None:
            await budget.acquire(amount)
        name = f"{key}/{unit}"
        self.granted[name] = self.granted.get(name, 0.0) + amount
        return Grant(amount, self.pause_left(key))

    async def pause(self, key: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    async def totals(self) -> dict[str, float]:
        return dict(self.granted)

    def pause_left(self, key: str) -> float:
        """Seconds of the endpoint's pause still to wait (0: not paused)."""
        return max(0.0, self._paused_until.get(key, 0.0) - time.monotonic())

    async def _wait_out_pause(self, key: str) -> None:
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (left := self.pause_left(key)) > 0:  # noqa: ASYNC110
            await anyio.sleep(left)


class PauseBoard:
    """One endpoint's pause as this worker knows it: its own 429s and those the keeper told."""

    def __init__(self) -> None:
        self.until = 0.0

    def extend(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + seconds)

    async def wait(self) -> None:
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (left := self.until - time.monotonic()) > 0:  # noqa: ASYNC110
            await anyio.sleep(left)


class LeasedBudget(MinuteBudget):
    """A gateway budget spent from leases of the keeper's; the static share when it is gone."""

    def __init__(
        self,
        broker: LeaseBroker,
        key: str,
        unit: str,
        per_minute: int,
        workers: int,
        board: PauseBoard,
    ) -> None:
        share = max(1, per_minute // max(1, workers))
        super().__init__(share)  # the fallback: this worker's static share
        self.per_minute = per_minute
        self._broker, self._key, self._unit, self._board = broker, key, unit, board
        self._slice = max(1.0, per_minute * LEASE_S / 60.0)
        self._balance = 0.0
        self._expires = 0.0
        self._lock = anyio.Lock()
        self.fell_back = False

    def would_wait(self, amount: float = 1.0) -> bool:
        if self.fell_back:
            return super().would_wait(amount)
        return self._live_balance() < amount or self._board.until > time.monotonic()

    async def acquire(self, amount: float = 1.0) -> None:
        if self.fell_back:
            await super().acquire(amount)
            return
        async with self._lock:  # one lease asked at a time per worker: no over-leasing
            while self._live_balance() < amount:
                want = max(self._slice, amount - self._live_balance())
                try:
                    with anyio.fail_after(LEASE_TIMEOUT_S):
                        grant = await self._broker.lease(self._key, self._unit, want)
                except Exception:  # the keeper is gone (actor died, node lost): static share
                    self.fell_back = True
                    break
                if grant.pause_s > 0:
                    self._board.extend(grant.pause_s)
                self._balance = self._live_balance() + grant.amount
                self._expires = time.monotonic() + LEASE_TTL_S
            if not self.fell_back:
                self._balance -= amount
        if self.fell_back:
            await super().acquire(amount)
        await self._board.wait()

    def _live_balance(self) -> float:
        return self._balance if time.monotonic() < self._expires else 0.0


class PauseReporting:
    """A backend as it was, except that its 429s are told to the keeper (pausing every
    worker) and to this worker's pause board."""

    def __init__(self, backend: Any, broker: LeaseBroker, key: str, board: PauseBoard) -> None:
        self._backend, self._broker, self._key, self._board = backend, broker, key, board

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        try:
            return await self._backend.complete(messages, params)
        except BackendError as error:
            if error.kind == "rate_limited":
                wait = error.retry_after_s if error.retry_after_s is not None else 1.0
                self._board.extend(wait)
                try:
                    with anyio.fail_after(LEASE_TIMEOUT_S):
                        await self._broker.pause(self._key, wait)
                except Exception:  # an unreachable keeper: this worker's own pause holds
                    pass
            raise

    async def aclose(self) -> None:
        await self._backend.aclose()


def unit_limits(limits: GatewayLimits) -> dict[str, int]:
    """The per-minute units a gateway's limits set, named as its budgets are."""
    return limits.per_unit()


def budget_key(gateway: Gateway) -> str:
    """An endpoint's key, the same in every process built from the same config."""
    return gateway_name(gateway)


def budget_spec(gateways: Mapping[str, Gateway]) -> BudgetSpec:
    """What the keeper holds for these gateways: each configured budget, and each replica's."""
    spec: BudgetSpec = {}
    for gateway in {id(g): g for g in gateways.values()}.values():
        key = budget_key(gateway)
        if gateway.limits_source == "configured":
            spec[key] = unit_limits(gateway.limits)
        for replica in getattr(gateway.backend, "replicas", ()):
            spec[f"{key}|{replica.name}"] = unit_limits(replica.limits)
    return spec


def lease_budgets(gateways: Mapping[str, Gateway], broker: LeaseBroker, workers: int) -> None:
    """Make each gateway (and each replica) spend leases of the keeper's budgets instead of
    owning its limits, and report its 429s to the keeper."""
    for gateway in {id(g): g for g in gateways.values()}.values():
        key = budget_key(gateway)
        board = PauseBoard()
        if gateway.limits_source == "configured":
            gateway.use_budgets(
                {
                    unit: LeasedBudget(broker, key, unit, per_minute, workers, board)
                    for unit, per_minute in unit_limits(gateway.limits).items()
                }
            )
        for replica in getattr(gateway.backend, "replicas", ()):
            own, own_board = f"{key}|{replica.name}", PauseBoard()
            replica.admission.use(
                {
                    unit: LeasedBudget(broker, own, unit, per_minute, workers, own_board)
                    for unit, per_minute in unit_limits(replica.limits).items()
                }
            )
            replica.backend = PauseReporting(replica.backend, broker, own, own_board)
        if not getattr(gateway.backend, "replicas", ()):
            gateway.backend = PauseReporting(gateway.backend, broker, key, board)
