"""The one progress protocol every stage shows its run through: generate, judge and evaluate hand
the same `LiveRun` to the same kind of display (the terminal's rich table, a notebook's widget,
a test's probe), so a new face is written once, not once per stage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from rapport.config.prices import PriceTable
from rapport.config.secrets import Redactor
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress


class LiveRun(msgspec.Struct, frozen=True):
    """What a display may read while a stage runs; the counters change under it (they are
    updated on the run's event loop, where the display runs too)."""

    progress: RunProgress  # conversations, turns, judging, --until-passing, the store's wait
    gateways: Mapping[str, Gateway]  # by role (judges as `judge:ID`): requests, limits, cost
    prices: PriceTable  # the run's prices, to show what its calls cost
    redactor: Redactor  # endpoint names and notices pass through it before they are shown


class Progress(Protocol):
    """Shows a stage's run. Called once on the run's event loop as the work starts; it may
    return at once or keep redrawing until the stage cancels it as the work ends (a display
    that holds the screen draws its last frame in a `finally`)."""

    async def __call__(self, run: LiveRun) -> None: ...
