"""How a stage called through the public API shows its progress: `progress=True` in a terminal
is the command line's live table, in a notebook a live-updating tqdm bar (a widget where
ipywidgets is installed, as tqdm.auto would pick; a line otherwise), anywhere else nothing;
`progress=False` is silent."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable, Mapping

import anyio
from rich.console import Console

from rapport.config.constants import PROGRESS_REFRESH_PER_S
from rapport.config.prices import PriceTable
from rapport.config.secrets import Redactor
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress

Display = Callable[[RunProgress], Awaitable[None]]
# The gateways to show, their prices and the run's redactor -> the coroutine that shows them.
DisplayFactory = Callable[[Mapping[str, Gateway], PriceTable, Redactor], Display | None]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def display_factory(progress: bool) -> DisplayFactory:
    """The display for `progress`, chosen where the call is made."""
    if not progress:
        return _none
    if in_notebook():
        return _notebook
    return _terminal


def _none(_gateways: Mapping[str, Gateway], _prices: PriceTable, _redactor: Redactor) -> None:
    return None


def _terminal(
    gateways: Mapping[str, Gateway], prices: PriceTable, redactor: Redactor
) -> Display | None:
    """The command line's live table on stderr, when stderr is a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    from rapport.cli.progress_display import live_display  # the table the command line draws

    return live_display(console, gateways, prices, redactor)


def _notebook(
    _gateways: Mapping[str, Gateway], _prices: PriceTable, _redactor: Redactor
) -> Display | None:
    return notebook_display


async def notebook_display(progress: RunProgress) -> None:
    """A tqdm bar over the run's conversations (or judgements), redrawn until cancelled."""
    if importlib.util.find_spec("ipywidgets") is not None:  # a live widget
        from tqdm.notebook import tqdm
    else:  # a line redrawn in place (tqdm.auto would warn first)
        from tqdm.std import tqdm

    judging_only = progress.total == 0 and progress.judging is not None
    bar = tqdm(total=progress.total or None, unit="conv", desc="judging" if judging_only else "")
    try:
        while True:
            _refresh(bar, progress, judging_only)
            await anyio.sleep(1 / PROGRESS_REFRESH_PER_S)
    finally:
        _refresh(bar, progress, judging_only)
        bar.close()


def _refresh(bar: object, progress: RunProgress, judging_only: bool) -> None:
    judging = progress.judging
    if judging_only and judging is not None:
        bar.n = judging.judged  # type: ignore[attr-defined]
        postfix = {"active": judging.active, "criteria failed": judging.failed}
    else:
        bar.n = progress.finished  # type: ignore[attr-defined]
        postfix = {"active": progress.active, "failed": progress.failed, "turns": progress.turns}
        if judging is not None:
            postfix["judged"] = judging.judged
    bar.set_postfix(postfix, refresh=False)  # type: ignore[attr-defined]
    bar.refresh()  # type: ignore[attr-defined]
