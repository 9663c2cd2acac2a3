"""Admits jobs from a stream, keeping at most `max_active` running: memory stays flat however
long the plan is, because only the active jobs exist."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def run_bounded(
    jobs: AsyncIterator[T], max_active: int, handle: Callable[[T], Awaitable[None]]
) -> None:
    """Run `handle(job)` for every job, at most `max_active` at a time; returns when all end."""
    slots = anyio.Semaphore(max_active)

    async def run_one(job: T) -> None:
        try:
            await handle(job)
        finally:
            slots.release()

    async with anyio.create_task_group() as group:
        async for job in jobs:
            await slots.acquire()
            group.start_soon(run_one, job)
