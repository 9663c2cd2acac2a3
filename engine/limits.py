"""Requests-per-minute and tokens-per-minute budgets as aiolimiter leaky buckets.

Providers enforce limits per second as well as per minute, so a budget is spread evenly over
the minute: the bucket holds about one second's worth, never a whole minute's burst.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

from config.constants import RATE_BURST_SECONDS


class MinuteBudget:
    """A per-minute budget of some unit (requests or tokens), drained evenly."""

    def __init__(self, per_minute: int, *, smallest_capacity: float = 1.0) -> None:
        self.per_minute = per_minute
        self.capacity = max(smallest_capacity, per_minute * RATE_BURST_SECONDS / 60.0)
        self._bucket = AsyncLimiter(self.capacity, self.capacity * 60.0 / per_minute)

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until `amount` fits; amounts above one bucket are clamped to a full bucket."""
        await self._bucket.acquire(min(amount, self.capacity))
