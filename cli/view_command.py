"""`rapport view` (the corpus in a local web page) and `rapport review sample` (its queue)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rapport._reads import DEFAULT_QUEUE, STRATA, check_database, sample_review_queue
from rapport.engine.interrupts import Interrupted

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORT = 8765

DbOption = Annotated[Path, typer.Option("--db", help="The project's DuckDB file.")]

review_app = typer.Typer(help="People's review of the corpus (the queue `rapport view` walks).")


def view(
    db: DbOption,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = DEFAULT_PORT,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Where to listen; anything but loopback needs the access token printed at "
            "start on every request.",
        ),
    ] = "127.0.0.1",
) -> None:
    """Read the corpus in the browser: overview, conversations with filters, one conversation
    with its verdicts, and people's reviews (the only thing the page writes)."""
    from aiohttp import web  # the server only when it is asked for

    from rapport.viewer.access import WILDCARDS, Access
    from rapport.viewer.app import make_app
    from rapport.viewer.listening import listening_socket

    check_database(db)  # a missing or foreign file: one line, before listening
    sock = listening_socket(host, port)  # an unknown host or a port in use: one line, no more
    console = Console(soft_wrap=True, highlight=False)
    access = None if host in LOOPBACK else Access.for_host(host)
    shown = socket.gethostname() if host in WILDCARDS else host
    shown = f"[{shown}]" if ":" in shown else shown
    if access is None:
        console.print(f"rapport view: http://{shown}:{port}/ (Ctrl+C stops)")
    else:
        console.print(
            f"rapport view: http://{shown}:{port}/?token={access.token} (Ctrl+C stops; "
            "every request needs this token: the address sets it in a cookie)"
        )
    with contextlib.suppress(KeyboardInterrupt, Interrupted, asyncio.CancelledError):
        web.run_app(
            make_app(db, loopback_only=access is None, access=access),
            sock=sock,
            print=None,
            handle_signals=True,
            access_log=None,
        )


@review_app.command("sample")
def sample(
    db: DbOption,
    n: Annotated[int, typer.Option("--n", min=1, max=100_000, help="Conversations to queue.")],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="random (a plain sample), disagreement (the judges part on pass/fail or a "
            "gate, then on the most criteria) or borderline (scores nearest the threshold).",
        ),
    ] = "random",
    stratify: Annotated[
        str | None,
        typer.Option(
            "--stratify",
            help="Keep these in proportion, comma-separated: "
            f"{', '.join(STRATA)} (topic and flaw: every one a conversation carries; "
            "primary-topic: the first topic its plan drew).",
        ),
    ] = None,
    queue: Annotated[
        str, typer.Option("--queue", help="The queue's name (one file holds several).")
    ] = DEFAULT_QUEUE,
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="Whom the queue is for.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**63 - 1)] = 0,
) -> None:
    """Draw a review queue (replacing the queue of that name) for `rapport view` to walk."""
    names = tuple(name.strip() for name in (stratify or "").split(",") if name.strip())
    summary = sample_review_queue(
        db, n, strategy=strategy, stratify=names, queue=queue, reviewer=reviewer, seed=seed
    )
    console = Console(soft_wrap=True, highlight=False)
    spread = " · ".join(f"{key} {count}" for key, count in sorted(summary.strata.items()))
    assigned = f" for {reviewer}" if reviewer else ""
    console.print(
        f"{summary.queued} conversations queued for review in queue {summary.queue}{assigned} "
        f"({summary.strategy}, of {summary.candidates} candidates; {spread})"
    )
    if summary.queued < n:
        console.print(f"only {summary.queued} of the {n} asked for could be drawn by {strategy}")
