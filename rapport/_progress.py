"""How a stage called through the public API shows its progress: `progress=True` in a terminal
is the command line's live table, in a notebook a live-updating tqdm bar (a widget where
ipywidgets is installed, as tqdm.auto would pick; a line otherwise), anywhere else nothing;
`progress=False` is silent."""

from __future__ import annotations

import importlib.util
import sys

import anyio
from rich.console import Console

from rapport.config.constants import PROGRESS_REFRESH_PER_S
from rapport.engine.progress import RunProgress
from rapport.stages.progress import LiveRun, Progress


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def display_for(progress: bool) -> Progress | None:
    """The display for `progress`, chosen where the call is made: the stages' one progress
    protocol, implemented by the terminal's table and the notebook's bar."""
    if not progress:
        return None
    if in_notebook():
        return notebook_display
    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    from rapport._live_table import live_display  # rich's table, imported only when drawn

    return live_display(console)


async def notebook_display(run: LiveRun) -> None:
    """A tqdm bar over the run's conversations (or judgements), redrawn until cancelled."""
    progress = run.progress
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
