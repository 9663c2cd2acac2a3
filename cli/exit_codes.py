"""What `rapport` exits with, so scripts can trust it (the README's "Exit codes" table)."""

from __future__ import annotations

import signal

import typer
from rich.console import Console

OK = 0  # everything asked for is done
INPUT_ERROR = 2  # bad input (flags, config, domain, database): nothing was run
PARTIAL = 3  # the run finished but some work failed: running the same command again retries it
NOTHING_DONE = 4  # nothing could be done: every unit failed, or the provider cannot be used
INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C; running the same command again resumes
TERMINATED = 128 + signal.SIGTERM  # 143: SIGTERM; likewise


def outcome(done: int, asked: int) -> int:
    """OK when all `asked` units are done, NOTHING_DONE when none is, else PARTIAL."""
    if done >= asked:
        return OK
    return NOTHING_DONE if done == 0 else PARTIAL


def interrupted_exit(signum: int) -> int:
    return TERMINATED if signum == signal.SIGTERM else INTERRUPTED


def combined(*codes: int) -> int:
    """One code for a command made of parts: OK if every part is, NOTHING_DONE if none did
    anything, else PARTIAL."""
    if all(code == OK for code in codes):
        return OK
    return NOTHING_DONE if all(code == NOTHING_DONE for code in codes) else PARTIAL


def finish(code: int, failures: str) -> None:
    """End a command that did its run: on failures, one summary line on stderr (`failures`,
    e.g. "3 of 51 conversations failed: ...") and a non-zero exit."""
    if code == OK:
        return
    Console(stderr=True, soft_wrap=True).print(failures, highlight=False)
    raise typer.Exit(code)
