"""Clocks for tests that are about waiting: nothing here asserts how long the machine took.

- `run_in_virtual_time`: an event loop whose clock ignores the wall and jumps to the next
  timer when every task waits, so budgets, pauses and sleeps take exact, repeatable loop time
  (and no wall time). Only for code that waits on no threads, sockets or processes.
- `run_with_settable_clock` + `advance_clock`: real time, real I/O, but the test can move the
  loop's clock forward to make a timer or a timeout fall due at a moment it chooses.
- `RecordingClock`: the gateway's clock, noting every wait the gateway asks for.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from rapport.engine.clock import LoopClock

T = TypeVar("T")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """Loop time starts at 0 and does not follow the wall: each turn of the loop moves it by
    the float's smallest step, and when every task waits for a timer it jumps to that timer."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        poll = self._selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            ready = poll(0)
            if ready:
                return ready
            if timeout is None:  # no timer at all: only I/O can wake the loop
                return poll(None)
            # Jump to the next timer, and always by at least the float's smallest step: a
            # limiter that re-arms its timer for "now" must see the clock move, or it spins.
            self._now = max(self._now + timeout, math.nextafter(self._now, math.inf))
            return []

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._now


class SettableClockLoop(asyncio.SelectorEventLoop):
    """Real time plus whatever the test has added with `advance_clock`."""

    def __init__(self) -> None:
        super().__init__()
        self._offset = 0.0

    def time(self) -> float:
        return super().time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


def run_in_virtual_time(function: Callable[..., Awaitable[T]], *args: object) -> T:
    return anyio.run(function, *args, backend_options={"loop_factory": VirtualTimeLoop})


def run_with_settable_clock(function: Callable[..., Awaitable[T]], *args: object) -> T:
    return anyio.run(function, *args, backend_options={"loop_factory": SettableClockLoop})


def advance_clock(seconds: float) -> None:
    """Move the running loop's clock forward: timers and timeouts due by then fire next."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, SettableClockLoop), "run the test with run_with_settable_clock"
    loop.advance(seconds)


class RecordingClock(LoopClock):
    """The event loop's clock, keeping the length of every sleep asked of it."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)
