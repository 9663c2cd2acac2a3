"""The clock the gateway reads and waits on: the running event loop's, unless a test passes
one that records its waits."""

from __future__ import annotations

import asyncio
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic timeline (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The event loop's own clock: the one aiolimiter's budgets and anyio's timeouts read, so
    pauses, retries and budgets share one timeline (which a test's virtual loop can move)."""

    def now(self) -> float:
        try:  # asyncio's loop directly: anyio.current_time() looks the library up every call
            return asyncio.get_running_loop().time()
        except RuntimeError:  # another event loop library (trio)
            return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
