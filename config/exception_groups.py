"""The first leaf of an exception group: what a run stops on, prints or stores.

Errors raised inside anyio task groups arrive wrapped, sometimes several groups deep (a task
group inside a task group). Every place that reports one error — the command line's one line,
the reason a run stopped, a judge's failure, a Ray worker's crash — unwraps it the same way,
written once here at the bottom of the layers so that every folder may import it."""

from __future__ import annotations


def first_leaf(error: BaseException) -> BaseException:
    """The first exception that is not a group, following each group's first member; an error
    that is not a group is its own leaf."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
