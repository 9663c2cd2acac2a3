"""An endpoint's limits, the per-minute budgets (aiolimiter leaky buckets) that keep them, and the
token estimates those budgets are charged with.

Providers enforce limits per second as well as per minute, so a budget is spread evenly over
the minute: the bucket holds about one second's worth, never a whole minute's burst.
"""

from __future__ import annotations

import msgspec
from aiolimiter import AsyncLimiter

from rapport.config.constants import (
    CHARS_PER_TOKEN_ESTIMATE,
    COMPLETION_AVERAGE_WEIGHT,
    RATE_BURST_SECONDS,
)

# Each per-minute budget's unit, and the field of GatewayLimits that sets it.
UNIT_FIELDS = (
    ("requests", "rpm"),
    ("tokens", "tpm"),
    ("input_tokens", "input_tpm"),
    ("output_tokens", "output_tpm"),
)


class GatewayLimits(msgspec.Struct, frozen=True):
    """Per-minute budgets and a concurrency cap; None means unlimited (or learned from the
    provider's rate-limit headers when no rate is given at all)."""

    rpm: int | None = None
    tpm: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None
    max_in_flight: int | None = None

    @property
    def has_rates(self) -> bool:
        return any((self.rpm, self.tpm, self.input_tpm, self.output_tpm))

    def per_unit(self) -> dict[str, int]:
        """The per-minute rates set, by budget unit (requests, tokens, input_tokens, ...)."""
        return {unit: getattr(self, field) for unit, field in UNIT_FIELDS if getattr(self, field)}


class MinuteBudget:
    """A per-minute budget of some unit (requests or tokens), drained evenly."""

    def __init__(self, per_minute: int, *, start_full: bool = False) -> None:
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute * RATE_BURST_SECONDS / 60.0)
        self._bucket = AsyncLimiter(self.capacity, self.capacity * 60.0 / per_minute)
        # A budget set up as the provider just answered 429 (or replacing a busy one) starts
        # as full as the provider's bucket is: its first caller pays one bucket, not a burst.
        self._owed = self.capacity if start_full else 0.0

    def would_wait(self, amount: float = 1.0) -> bool:
        """Whether `amount` must wait now: the budget, not the caller, is holding back."""
        return not self._bucket.has_capacity(min(amount, self.capacity))

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until `amount` has drained through; larger than one bucket is taken in parts."""
        amount, self._owed = amount + self._owed, 0.0
        while amount > 0:
            part = min(amount, self.capacity)
            await self._bucket.acquire(part)
            amount -= part


class TokenEstimate(msgspec.Struct, frozen=True):
    prompt: float
    completion: float

    @property
    def total(self) -> float:
        return self.prompt + self.completion


class TokenEstimator:
    """Estimates a call's tokens before it is made, learning from reported usage: the prompt's
    characters per token, and a moving average of completion lengths (capped by max_tokens)."""

    def __init__(self) -> None:
        self._chars_per_token = CHARS_PER_TOKEN_ESTIMATE
        self._completion_average: float | None = None

    def estimate(self, prompt_chars: int, max_tokens: int) -> TokenEstimate:
        completion = (
            self._completion_average if self._completion_average is not None else max_tokens
        )
        return TokenEstimate(prompt_chars / self._chars_per_token, min(completion, max_tokens))

    def learn(self, prompt_chars: int, prompt_tokens: int, completion_tokens: int) -> None:
        weight = COMPLETION_AVERAGE_WEIGHT
        if prompt_tokens > 0 and prompt_chars > 0:
            ratio = prompt_chars / prompt_tokens
            self._chars_per_token += weight * (ratio - self._chars_per_token)
        if self._completion_average is None:
            self._completion_average = float(completion_tokens)
        else:
            self._completion_average += weight * (completion_tokens - self._completion_average)
