"""Where a stage runs when the public API is called, so the same call works in a script, inside
a running event loop (a Jupyter cell) and awaited on one.

The stages are synchronous entry points that start their own event loop (`anyio.run`) and
watch SIGINT/SIGTERM. A thread with a running loop cannot start another, and only the main
thread may watch signals, so:
- no loop running on the main thread (a script): the stage runs here, as the command line
  runs it (Ctrl-C stops it cleanly);
- a loop running (a notebook cell): the stage runs on a worker thread with a loop of its own
  and this thread blocks; SIGINT here (Ctrl-C, the kernel's interrupt) throws the run's stop
  switch, waits for its cleanup (what was made is stored, the run is `interrupted`) and raises
  Interrupted (RunInterrupted from the public methods);
- awaited (`await corpus.agenerate(...)`): the stage's blocking preparation (config, DuckDB)
  runs on a worker thread and its async work on the caller's loop; cancelling the await stops
  the run the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
import anyio.to_thread

from rapport.engine.interrupts import STOP_SWITCH, Interrupted, StopSwitch
from rapport.errors import translated

T = TypeVar("T")
JOIN_SLICE_S = 0.1  # the most a Ctrl-C waits before the blocked caller throws the stop switch


def loop_running() -> bool:
    """Whether this thread is inside a running asyncio loop (a notebook cell is)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def call_blocking(stage: Callable[[], T]) -> T:
    """Run `stage` to its end from synchronous code anywhere; its errors as the API's, a stop
    as Interrupted (the public methods make it RunInterrupted, the command line prints it)."""
    with translated(interrupts=False):
        if not loop_running() and threading.current_thread() is threading.main_thread():
            return stage()
        return _on_worker_thread(stage)


def _on_worker_thread(stage: Callable[[], T]) -> T:
    switch = StopSwitch()
    context = contextvars.copy_context()
    context.run(STOP_SWITCH.set, switch)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # Ctrl-C is the caller's
        try:
            outcome.append(context.run(stage))
        except BaseException as error:  # handed to the waiting thread, raised there
            failure.append(error)

    worker = threading.Thread(target=work, name="rapport-stage", daemon=True)
    with _sigint_stops(switch):
        worker.start()
        while worker.is_alive():
            try:  # in slices: a signal's Python handler runs between them, wherever it landed
                worker.join(JOIN_SLICE_S)
            except KeyboardInterrupt:  # Ctrl-C as an exception: stop the run, wait for cleanup
                switch.stop(signal.SIGINT)
    if failure:
        raise failure[0]
    if switch.signum is not None:  # stopped after the stage's last chance to notice
        raise Interrupted(switch.signum)
    return outcome[0]


@contextmanager
def _sigint_stops(switch: StopSwitch) -> Iterator[None]:
    """On the main thread, SIGINT (Ctrl-C, a kernel's interrupt) throws the switch while the
    stage runs, whatever handler the loop installed (asyncio.run's only cancels its task, which
    is blocked here); elsewhere a KeyboardInterrupt does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, _frame: switch.stop(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


async def call_awaitable(stage: Callable[[], T]) -> T:
    """Run `stage` for an awaiting caller: its async work on the caller's loop, its blocking
    parts on a worker thread; cancelling the await stops the run cleanly, then the
    cancellation goes on."""
    switch = StopSwitch(on_caller_loop=True)
    context = contextvars.copy_context()
    context.run(STOP_SWITCH.set, switch)
    outcome: list[T] = []
    failure: list[BaseException] = []
    done = anyio.Event()

    async def work() -> None:
        with anyio.CancelScope(shield=True):  # the stage ends by its own cleanup, never cut off
            try:
                outcome.append(await anyio.to_thread.run_sync(context.run, stage))
            except BaseException as error:  # handed to the awaiting task, raised there
                failure.append(error)
            finally:
                done.set()

    with translated(interrupts=False):
        async with anyio.create_task_group() as group:
            group.start_soon(work)
            try:
                await done.wait()
            except BaseException:  # cancelled (or interrupted): stop the run, wait for its end
                switch.stop(signal.SIGINT)
                with anyio.CancelScope(shield=True):
                    await done.wait()
                raise
        if failure:
            raise failure[0]
        return outcome[0]
