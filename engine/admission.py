"""Admission: whether and when one call may start at an endpoint.

A call waits, in this order, for a slot under the in-flight cap, for the pause a 429 asked for,
and for its share of the per-minute budgets: configured, stated by the provider in its headers
(adopted once, when nobody configured any), leased from a keeper (engine/leases.py) or learned
(engine/learning.py). Last, when the run has a budget (engine/budget.py), the call's worst case
is reserved (BudgetReached when it does not fit) and settled to its cost once it has ended.
A token budget is charged an estimate before the call and the difference from the reported
usage after it. The gateway admits its calls through one; so does
each replica of a replica set (engine/replicas.py), with no pause and nothing to learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import msgspec

from rapport.engine.clock import Clock
from rapport.engine.learning import NOTHING_LEARNED, Learning
from rapport.engine.limits import GatewayLimits, MinuteBudget, TokenEstimate, TokenEstimator
from rapport.engine.types import ChatMessage, Completion, CompletionParams, ReportedLimits

if TYPE_CHECKING:  # the meter is the run's, handed over by engine/budget.py
    from rapport.engine.budget import Reservation, SpendMeter

_TOKEN_UNITS = ("tokens", "input_tokens", "output_tokens")


class Ticket(msgspec.Struct, frozen=True, gc=False):
    """What admitting one call charged: settled once the call has ended."""

    estimate: TokenEstimate | None = None  # None: no token budget was charged
    prompt_chars: int = 0
    rate_bound: bool = False  # the learned rate held it back
    reservation: Reservation | None = None  # held of the run's budget while the call runs


UNCHARGED = Ticket()


class Admission:
    """The limits of one endpoint and the waits that keep them (see the module's docstring).

    `may_state`: the backend may state limits in its responses (a real provider): when none
    are configured, the first it states are adopted, and usage is counted until then (replicas
    pass False: each keeps the limits configured for it). `learned`: learn what nobody
    configured or stated.
    """

    def __init__(
        self,
        limits: GatewayLimits,
        clock: Clock,
        *,
        may_state: bool = False,
        learned: Learning | None = None,
        default_pause_s: float = 1.0,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self.configured = limits.has_rates
        self.budgets: dict[str, MinuteBudget] = {}
        self._apply(limits)
        self._stated_pending = may_state and not limits.has_rates  # adopted once, when stated
        cap = limits.max_in_flight
        self.learned = learned
        if learned is not None and learned.in_flight is not None:
            cap = learned.in_flight
        self.slots = anyio.CapacityLimiter(cap) if cap else None
        self._estimator = TokenEstimator()
        self._token_debt = 0.0
        self._paused_until = 0.0
        self._default_pause_s = default_pause_s
        self.spend: SpendMeter | None = None  # the run's budget, when it has one
        self._meter()

    def _apply(self, limits: GatewayLimits, *, start_full: bool = False) -> None:
        for unit, per_minute in limits.per_unit().items():
            self.budgets[unit] = MinuteBudget(per_minute, start_full=start_full)

    def _meter(self) -> None:
        """Count prompt characters and estimate tokens only where they can matter: a token
        budget, or one a real provider may still state (an instant simulator's turns then
        skip the per-call sum over the whole history)."""
        self.metered = self._stated_pending or any(unit in self.budgets for unit in _TOKEN_UNITS)

    def use(self, budgets: dict[str, MinuteBudget]) -> None:
        """Spend these budgets instead of its own (the same units): several processes sharing
        one provider limit lease it from one keeper (engine/leases.py)."""
        self.budgets.update(budgets)
        self._meter()

    def would_wait(self) -> bool:
        """Whether a call admitted now would wait for a budget."""
        return any(budget.would_wait() for budget in self.budgets.values())

    async def admit(self, messages: Sequence[ChatMessage], params: CompletionParams) -> Ticket:
        """Wait out the pause, then charge the budgets (a slot is the caller's, held first:
        requests that queued for one are still held to these when it frees)."""
        # Every step that has nothing to do is skipped without an await: this runs per turn.
        if self._paused_until:
            await self._wait_out_pause()
        ticket = UNCHARGED
        if self.metered:
            prompt_chars = sum(len(m.content) for m in messages)
            estimate = self._estimator.estimate(prompt_chars, params.max_tokens)
            await self._acquire(estimate)
            ticket = Ticket(estimate, prompt_chars)
        elif self.budgets:  # a request budget only
            await self.budgets["requests"].acquire(1)
        learned = self.learned
        if learned is not None:
            rate_bound = await learned.acquire_rate()
            learned.on_request(params.max_tokens)
            if rate_bound:
                ticket = msgspec.structs.replace(ticket, rate_bound=True)
        if self.spend is not None:  # last: nothing may wait while it holds the budget
            reservation = self.spend.reserve(messages, params)
            ticket = msgspec.structs.replace(ticket, reservation=reservation)
        return ticket

    async def _acquire(self, estimate: TokenEstimate) -> None:
        budgets = self.budgets
        if not budgets:
            return
        if "requests" in budgets:
            await budgets["requests"].acquire(1)
        if "tokens" in budgets:
            charge = estimate.total + self._token_debt
            self._token_debt = min(charge, 0.0)  # unused credit carries over
            await budgets["tokens"].acquire(max(charge, 0.0))
        if "input_tokens" in budgets:
            await budgets["input_tokens"].acquire(estimate.prompt)
        if "output_tokens" in budgets:
            await budgets["output_tokens"].acquire(estimate.completion)

    def release(self, ticket: Ticket) -> None:
        """A call failed: its reservation of the budget is freed (it costs nothing)."""
        if ticket.reservation is not None and self.spend is not None:
            self.spend.settle(ticket.reservation, None)

    def settle(self, ticket: Ticket, completion: Completion) -> None:
        """A call succeeded: its cost settled, its estimate reconciled, limits it stated
        adopted, learning followed."""
        if ticket.reservation is not None and self.spend is not None:
            self.spend.settle(ticket.reservation, completion)
        estimate = ticket.estimate
        if estimate is not None:
            self._reconcile(estimate, ticket.prompt_chars, completion)
        if self._stated_pending and completion.limits is not None:
            self._adopt(completion.limits)
        if self.learned is not None:
            self.follow_learned()

    def _reconcile(
        self, estimate: TokenEstimate, prompt_chars: int, completion: Completion
    ) -> None:
        """Charge the difference between estimated and reported tokens to the next call."""
        actual = completion.prompt_tokens + completion.completion_tokens
        self._token_debt += actual - estimate.total
        self._estimator.learn(prompt_chars, completion.prompt_tokens, completion.completion_tokens)

    def refused(
        self, kind: str, retry_after_s: float | None, stated: ReportedLimits | None
    ) -> None:
        """A call failed: a 429 pauses every caller; limits its response stated are adopted."""
        if kind == "rate_limited":
            wait = retry_after_s if retry_after_s is not None else self._default_pause_s
            self._paused_until = max(self._paused_until, self._clock.now() + wait)
        if self._stated_pending and stated is not None:
            self._adopt(stated, after_429=kind == "rate_limited")

    def _adopt(self, reported: ReportedLimits, *, after_429: bool = False) -> None:
        """Use the limits the provider announced (in any response, 429s included), once,
        when the user configured none; they replace whatever was being learned."""
        stated = GatewayLimits(
            rpm=reported.requests,
            tpm=reported.tokens,
            input_tpm=reported.input_tokens,
            output_tpm=reported.output_tokens,
            max_in_flight=self.limits.max_in_flight,
        )
        if stated.has_rates:
            self.limits = stated
            self._stated_pending = False
            self._apply(stated, start_full=after_429)
            self._meter()
            if self.learned is not None:
                self.learned.stop_learning()
                self.follow_learned()

    async def _wait_out_pause(self) -> None:
        if not self._paused_until:  # never rate limited: skip reading the clock
            return
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (delay := self._paused_until - self._clock.now()) > 0:
            await self._clock.sleep(delay)

    def follow_learned(self) -> None:
        """Apply what is learned now to the in-flight cap (when none is configured) and to
        the learned rate."""
        assert self.learned is not None
        cap = self.learned.retune()
        if self.slots is not None and self.limits.max_in_flight is None:
            cap = cap if cap is not None else math.inf
            if self.slots.total_tokens != cap:
                self.slots.total_tokens = cap

    @property
    def effective_limits(self) -> GatewayLimits:
        """The limits in force now: configured or stated, else learned (display and stats)."""
        learned = self.learned.current() if self.learned is not None else None
        if learned is None or (learned.rpm is None and learned.in_flight is None):
            return self.limits
        return msgspec.structs.replace(
            self.limits,
            rpm=self.limits.rpm or (None if learned.rpm is None else round(learned.rpm)),
            max_in_flight=self.limits.max_in_flight or learned.in_flight,
        )

    @property
    def source(self) -> str | None:
        """Where the rate limits in force come from: configured, stated (headers) or learned."""
        if self.configured:
            return "configured"
        if self.limits.has_rates:
            return "stated"
        if self.learned is not None and self.learned.current() != NOTHING_LEARNED:
            return "learned"
        return None
