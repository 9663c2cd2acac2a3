"""Ctrl-C (SIGINT) and SIGTERM stop a run cleanly: the work is cancelled, its cleanup runs
(what was received is stored, the run row says `interrupted`), then `Interrupted` tells the
command line what to print and which code to exit with."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import FrameType
from typing import TypeVar

import anyio
import anyio.from_thread
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


class StopSwitch:
    """A stop asked by another thread instead of a signal: a run started where signals cannot
    be watched (a worker thread, a notebook's loop) is cancelled through it, as SIGINT cancels a
    run of the command line. `on_caller_loop`: the run's async work goes to the event loop that
    started the worker thread (`anyio.to_thread`), not to a loop of its own."""

    def __init__(self, *, on_caller_loop: bool = False) -> None:
        self.on_caller_loop = on_caller_loop
        self._lock = threading.Lock()
        self._signum: int | None = None
        self._cancel: Callable[[], None] | None = None

    @property
    def signum(self) -> int | None:
        """The signal the stop stands for, or None while nobody asked for one."""
        return self._signum

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop (from any thread): its work is cancelled, its cleanup runs."""
        with self._lock:
            if self._signum is None:
                self._signum = signum
            cancel = self._cancel
        if cancel is not None:
            cancel()

    def attach(self, cancel: Callable[[], None]) -> None:
        """The running work's cancel (callable from any thread); called at once if a stop came
        first."""
        with self._lock:
            self._cancel = cancel
            stopped = self._signum is not None
        if stopped:
            cancel()

    def detach(self) -> None:
        with self._lock:
            self._cancel = None


# Set by the caller of a stage that runs off the main thread (rapport's public API); None: the
# command line's case, where SIGINT and SIGTERM are watched.
STOP_SWITCH: ContextVar[StopSwitch | None] = ContextVar("rapport_stop_switch", default=None)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def raise_on_stop_signals() -> None:
    """Outside an event loop (validation, planning), SIGINT and SIGTERM raise Interrupted."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, _raise_interrupted)


def run_interruptible(main: Callable[..., Awaitable[T]], *args: object) -> T:
    """`anyio.run(main, *args)`, except that SIGINT or SIGTERM cancels `main`, lets its cleanup
    finish (a second signal meanwhile is ignored), then raises Interrupted. Under a
    `STOP_SWITCH` (a worker thread, where signals cannot be watched) the switch stops it
    instead."""
    switch = STOP_SWITCH.get()
    if switch is not None:
        return _run_switched(switch, main, *args)
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


def _run_switched(switch: StopSwitch, main: Callable[..., Awaitable[T]], *args: object) -> T:
    """`main` on this thread's own loop (or the caller's, `switch.on_caller_loop`), cancelled
    when the switch is thrown; then Interrupted, as a signal would give."""

    async def guarded() -> T:
        work = anyio.CancelScope()
        loop = asyncio.get_running_loop()

        def cancel() -> None:  # from any thread: the scope is only touched on its loop
            with contextlib.suppress(RuntimeError):  # a closed loop: the work is over already
                loop.call_soon_threadsafe(work.cancel)

        switch.attach(cancel)
        try:
            with work:
                return await main(*args)
        finally:
            switch.detach()

    try:
        run = anyio.from_thread.run if switch.on_caller_loop else anyio.run
        result = run(guarded)
    except Exception as error:
        if switch.signum is not None:  # a failure while stopping: the stop is what was asked
            raise Interrupted(switch.signum) from error
        raise
    if switch.signum is not None:
        raise Interrupted(switch.signum)
    return result
