"""Ctrl-C (SIGINT) and SIGTERM stop a run cleanly: the work is cancelled, its cleanup runs
(what was received is stored, the run row says `interrupted`), then `Interrupted` tells the
command line what to print and which code to exit with."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TypeVar

import anyio
from anyio.abc import TaskStatus

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A signal stopped the command. A BaseException like KeyboardInterrupt, so no `except
    Exception` swallows it, but not one: typer would turn it into a silent exit 130."""

    def __init__(self, signum: int, progress: str | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.progress = progress  # e.g. "40 of 51 conversations complete", added by the run


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def raise_on_stop_signals() -> None:
    """Outside an event loop (validation, planning), SIGINT and SIGTERM raise Interrupted."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, _raise_interrupted)


def run_interruptible(main: Callable[..., Awaitable[T]], *args: object) -> T:
    """`anyio.run(main, *args)`, except that SIGINT or SIGTERM cancels `main`, lets its cleanup
    finish (a second signal meanwhile is ignored), then raises Interrupted."""
    received: list[int] = []

    async def watch(work: anyio.CancelScope, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            task_status.started()
            async for signum in signals:
                if not received:
                    received.append(signum)
                    work.cancel()

    async def guarded() -> T | None:
        result: T | None = None
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            work = anyio.CancelScope()
            await group.start(watch, work)
            try:
                with work:
                    result = await main(*args)
            except Exception as error:  # raised below, outside the group: not wrapped in one
                failure = error
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return result

    previous = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}
    try:
        result = anyio.run(guarded)
    except Exception as error:
        if received:  # a failure while stopping: the stop is what the user asked for
            raise Interrupted(received[0]) from error
        raise
    finally:
        for stop, handler in previous.items():
            if handler is not None:
                signal.signal(stop, handler)
    if received:
        raise Interrupted(received[0])
    return result  # type: ignore[return-value]
