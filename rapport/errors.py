"""The errors the public API raises: the same classes, with the same one-line messages, that the
command line prints and maps to its exit codes (cli/exit_codes.py), so both faces say the same
thing. Every one is a `RapportError` except `RunInterrupted`, which is a `KeyboardInterrupt`."""

from __future__ import annotations

import functools
import inspect
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rapport.config.errors import BadInput, ConfigError, RapportError
from rapport.config.exception_groups import first_leaf
from rapport.config.secrets import Redactor
from rapport.engine.budget import BudgetReached
from rapport.engine.errors import ProviderUnreachable, ProviderUnusable
from rapport.engine.interrupts import Interrupted
from rapport.store.errors import StoreError

__all__ = [
    "BadInput",
    "BudgetReached",
    "ConfigError",
    "ProviderUnreachable",
    "ProviderUnusable",
    "RapportError",
    "RunInterrupted",
    "StoreError",
    "api_errors",
    "translated",
]

F = TypeVar("F", bound=Callable[..., Any])


class RunInterrupted(Interrupted, KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, or a notebook's interrupt) stopped a run: what it made is stored, the
    run is marked `interrupted`, and calling the same method again resumes it. A
    KeyboardInterrupt, so a script or a notebook stops as it does on Ctrl-C anywhere."""

    def __init__(self, signum: int, progress: str | None = None) -> None:
        super().__init__(signum, progress)
        done = f"{progress}, " if progress else ""
        self.args = (f"interrupted: {done}run the same command again to resume",)

    def __str__(self) -> str:
        return str(self.args[0])


@contextmanager
def translated(*, interrupts: bool = True) -> Iterator[None]:
    """Raise what a stage raises as the API's classes: a plain RapportError (bad input of any
    kind) as BadInput, with the message unchanged; the first user error out of an exception
    group unwrapped; a message redacted as the command line prints it (a provider may echo a
    key); with `interrupts`, a stop as RunInterrupted (the command line keeps Interrupted: a
    KeyboardInterrupt would become click's silent exit). Raises the translated error."""
    try:
        yield
    except RunInterrupted:
        raise
    except Interrupted as stop:
        if not interrupts:
            raise
        raise RunInterrupted(stop.signum, stop.progress) from None
    except KeyboardInterrupt:
        if not interrupts:
            raise
        raise RunInterrupted(signal.SIGINT) from None
    except BaseExceptionGroup as group:
        leaf = user_error(group)
        if leaf is None:
            raise
        raise _as_api_error(leaf, interrupts) from None
    except RapportError as error:
        translated_error = _as_api_error(error, interrupts)
        if translated_error is error:
            raise
        raise translated_error from None


def user_error(group: BaseExceptionGroup) -> BaseException | None:
    """A stop, else the first user error (RapportError), out of a group raised by task groups;
    None when the group holds neither (a bug: the caller re-raises the group). The API and the
    command line unwrap alike, so both say the same line."""
    stops, _ = group.split(Interrupted)
    found = stops if stops is not None else group.split(RapportError)[0]
    return None if found is None else first_leaf(found)


def _as_api_error(error: BaseException, interrupts: bool = True) -> BaseException:
    if isinstance(error, Interrupted) and not isinstance(error, RunInterrupted) and interrupts:
        return RunInterrupted(error.signum, error.progress)
    if not isinstance(error, RapportError):
        return error
    message = Redactor.from_environ(os.environ)(str(error))  # a provider may echo a key
    if type(error) is RapportError:  # the stages raise the base class for bad input
        return BadInput(message)
    if message != str(error):
        error.args = (message,)
    return error


def api_errors(method: F) -> F:
    """A public function or method (sync or async) whose errors are translated (see
    `translated`), from its arguments' checks to the stage's end."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            with translated():
                return await method(*args, **kwargs)

        return awaited  # type: ignore[return-value]

    @functools.wraps(method)
    def called(*args: Any, **kwargs: Any) -> Any:
        with translated():
            return method(*args, **kwargs)

    return called  # type: ignore[return-value]
