"""What `rapport` exits with, so scripts can trust it (the README's "Exit codes" table)."""

from __future__ import annotations

import signal

import typer
from rich.console import Console

from rapport.errors import BudgetReached, ProviderUnusable, RapportError

OK = 0  # everything asked for is done
INTERNAL_ERROR = 1  # a bug of Rapport's: one line (RAPPORT_TRACEBACK=1 shows the traceback)
INPUT_ERROR = 2  # bad input (flags, config, domain, database): nothing was run
PARTIAL = 3  # the run finished but some work failed: running the same command again retries it
NOTHING_DONE = 4  # nothing could be done: every unit failed, or the provider cannot be used
BUDGET_REACHED = 5  # --max-cost stopped the run: the same command with a higher one continues
INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C; running the same command again resumes
TERMINATED = 128 + signal.SIGTERM  # 143: SIGTERM; likewise
TRACEBACK_ENV = "RAPPORT_TRACEBACK"  # set it to see an internal error's traceback


def outcome(*parts: tuple[int, int]) -> int:
    """The code of a run made of parts, each (units done, units asked): OK when every unit asked
    for is done, NOTHING_DONE when none is, else PARTIAL. A part with nothing asked (nothing to
    judge, say) does not count."""
    asked = [(done, wanted) for done, wanted in parts if wanted > 0]
    if all(done >= wanted for done, wanted in asked):
        return OK
    return NOTHING_DONE if all(done == 0 for done, _ in asked) else PARTIAL


def error_exit(error: RapportError) -> int:
    """The code for an error the API raised (its message is the line printed): BudgetReached
    is a clean stop, ProviderUnusable means nothing could be done, any other (BadInput: flags,
    config, domain, database) is bad input."""
    if isinstance(error, BudgetReached):
        return BUDGET_REACHED
    if isinstance(error, ProviderUnusable):
        return NOTHING_DONE
    return INPUT_ERROR


def interrupted_exit(signum: int) -> int:
    return TERMINATED if signum == signal.SIGTERM else INTERRUPTED


def finish(code: int, failures: str) -> None:
    """End a command that did its run: on failures, one summary line on stderr (`failures`,
    e.g. "3 of 51 conversations failed: ...") and a non-zero exit."""
    if code == OK:
        return
    Console(stderr=True, soft_wrap=True).print(failures, highlight=False)
    raise typer.Exit(code)
