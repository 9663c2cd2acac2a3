"""A hard budget (`--max-cost`, `budget_usd:`): one spend guard shared by every gateway of a
run, consulted before each call, so the spend never passes the budget.

Each call reserves its worst case before it starts (the prompt's tokens estimated high, at the
input price, plus `max_tokens` at the output price) and settles to its real cost when it ends.
A call starts only when what was spent, plus what calls in flight have reserved, plus its own
worst case fits in the budget. The first call refused stops the run: every later one is refused
too, while the calls in flight finish and are stored (see `BudgetReached`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import msgspec

from rapport.config.constants import WORST_CASE_CHARS_PER_TOKEN, WORST_CASE_MARGIN
from rapport.config.errors import RapportError
from rapport.config.prices import PriceTable, usage_cost
from rapport.config.run import Price
from rapport.engine.backend import simulated
from rapport.engine.errors import ProviderUnusable
from rapport.engine.types import ChatMessage, Completion, CompletionParams

if TYPE_CHECKING:  # the gateway holds a meter: a runtime import would be a cycle
    from rapport.engine.gateway import Gateway

T = TypeVar("T")
MESSAGE_OVERHEAD_TOKENS = 8  # role and separators per message, counted high
FREE_PROVIDERS = frozenset({"llamacpp"})  # runs in this process: no bill


class BudgetReached(ProviderUnusable):
    """No call may start: the budget would be passed. The conversation that asked stops where
    it is (what it said is stored, it resumes next run) and is not failed; the run ends once
    the calls in flight have finished."""

    kind = "budget"

    def __init__(self, budget_usd: float, spent_usd: float, progress: str | None = None) -> None:
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.progress = progress  # e.g. "12 of 40 conversations complete", added by the run
        super().__init__(budget_line(budget_usd, spent_usd, progress))


def budget_line(budget_usd: float, spent_usd: float, progress: str | None = None) -> str:
    done = f" ({progress})" if progress else ""
    return (
        f"budget of ${budget_usd:,.2f} reached: ${spent_usd:,.4f} spent{done}; "
        "run again with a higher --max-cost to continue"
    )


class SpendGuard:
    """The budget of one run, shared by its gateways: spent (by earlier runs and this one) plus
    reserved by calls in flight never passes it. Not thread-safe: one event loop uses it."""

    def __init__(self, budget_usd: float, spent_before_usd: float = 0.0) -> None:
        self.budget_usd = budget_usd
        self.spent_before_usd = spent_before_usd  # earlier runs of the same plan
        self.spent_usd = 0.0  # by this run's calls, settled
        self.reserved_usd = 0.0  # worst cases of the calls in flight
        self.reached = False  # a call was refused: every later call is refused too

    @property
    def total_spent_usd(self) -> float:
        return self.spent_before_usd + self.spent_usd

    def reserve(self, worst_usd: float) -> None:
        """Hold `worst_usd` for a call about to start, or raise BudgetReached."""
        if self.reached or self.total_spent_usd + self.reserved_usd + worst_usd > self.budget_usd:
            self.reached = True
            raise BudgetReached(self.budget_usd, self.total_spent_usd + self.reserved_usd)
        self.reserved_usd += worst_usd

    def settle(self, reserved_usd: float, cost_usd: float) -> None:
        """A call ended: its reservation becomes what it really cost (0 for a failed call)."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)
        self.spent_usd += cost_usd


class Reservation(msgspec.Struct, frozen=True):
    """What a call in flight holds of the budget, and the size of its prompt."""

    usd: float
    prompt_chars: int


class SpendMeter:
    """One gateway's side of the guard: its model's price (None: a free backend, simulated or
    local) turns a call's worst case and its usage into dollars.

    A prompt's worst case in tokens is counted from its characters: at first at
    WORST_CASE_CHARS_PER_TOKEN, then, once the provider has reported usage, at the most tokens
    per character it has reported so far, with WORST_CASE_MARGIN on top.
    """

    def __init__(self, guard: SpendGuard, price: Price | None) -> None:
        self.guard = guard
        self.price = price
        self._tokens_per_char: float | None = None  # the most the provider reported so far

    def worst_prompt_tokens(self, chars: int, messages: int) -> int:
        per_char = (
            1.0 / WORST_CASE_CHARS_PER_TOKEN
            if self._tokens_per_char is None
            else self._tokens_per_char * WORST_CASE_MARGIN
        )
        return math.ceil(chars * per_char) + MESSAGE_OVERHEAD_TOKENS * messages

    def reserve(self, messages: Sequence[ChatMessage], params: CompletionParams) -> Reservation:
        """Reserve the call's worst case (raises BudgetReached)."""
        chars = sum(len(message.content) for message in messages)
        worst = 0.0
        price = self.price
        if price is not None:
            prompt = self.worst_prompt_tokens(chars, len(messages))
            # A cache write may cost more than uncached input (Anthropic): count it so.
            writes = prompt if (price.cache_write or 0.0) > price.input else 0
            worst = usage_cost(price, prompt, params.max_tokens, cache_write_tokens=writes)
        self.guard.reserve(worst)
        return Reservation(worst, chars)

    def settle(self, reservation: Reservation, completion: Completion | None) -> None:
        """Settle to the completion's cost (None: the call failed and costs nothing)."""
        if completion is None:
            self.guard.settle(reservation.usd, 0.0)
            return
        if reservation.prompt_chars and completion.prompt_tokens:
            seen = completion.prompt_tokens / reservation.prompt_chars
            if self._tokens_per_char is None or seen > self._tokens_per_char:
                self._tokens_per_char = seen
        self.guard.settle(reservation.usd, self.cost(completion))

    def cost(self, completion: Completion) -> float:
        """The gateway's per-call cost when it set one, else this meter's price of its usage."""
        if completion.cost_usd is not None:
            return completion.cost_usd
        if self.price is None:
            return 0.0
        return usage_cost(
            self.price,
            completion.prompt_tokens,
            completion.completion_tokens,
            cache_read_tokens=completion.cache_read_tokens,
            cache_write_tokens=completion.cache_write_tokens,
        )


def attach_budget(guard: SpendGuard, gateways: Mapping[str, Gateway], prices: PriceTable) -> None:
    """Give every gateway of the run a meter on `guard`. A backend that costs nothing
    (simulated, null, the in-process llama.cpp) is free; any other needs a known price, or
    the budget could not be kept: a one-line error names the model."""
    for role, gateway in gateways.items():
        backend = gateway.backend
        price = None
        if not (simulated(backend) or backend.provider in FREE_PROVIDERS):
            price = prices.price_for(backend.model)
            if price is None:
                raise RapportError(
                    f"--max-cost needs the price of every model, and {gateway.label} ({role}) "
                    "has none: add it under `prices:` in the run config"
                )
        gateway.spend = SpendMeter(guard, price)


async def within_budget(jobs: AsyncIterator[T], guard: SpendGuard | None) -> AsyncIterator[T]:
    """The jobs, until the budget has refused a call: no conversation starts after that."""
    async for job in jobs:
        if guard is not None and guard.reached:
            return
        yield job
