"""`rapport view`: the corpus in a local web page (aiohttp, server-rendered HTML).

Each request opens the file read-only through `connect_for_reading`, which asks a running
`generate` for its turn, and closes it before answering, so the run never fails and never
waits long. The only write is a review (store.reviews). One lock serialises the page's own
connections: DuckDB refuses a read-only and a writing connection to one file in one process.
POSTs carry a token made when the process starts; every value from the database is escaped and
the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
from collections.abc import Awaitable, Callable
from contextlib import closing
from importlib import resources
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

import duckdb
import msgspec
from aiohttp import web

from rapport.store import agreement_reads, overview_reads, pass_reasons, review_queues, viewer_reads
from rapport.store.database import connect_for_reading
from rapport.store.errors import StoreError
from rapport.store.reviews import ANSWERS, OVERALL, Review, save_review
from rapport.viewer import agreement_page, overview_page, pages, reasons, review_page
from rapport.viewer.access import Access, refusal
from rapport.viewer.params import BadParameter, list_query

T = TypeVar("T")
MAX_REVIEWER = 80
MAX_NOTE = 4000
REVIEWER_COOKIE = "rapport_reviewer"  # who reviews, set by the page's script and by a save
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # a same-origin form POST then names its Origin
}


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class ViewerState(msgspec.Struct):
    """What every handler shares: the file, the token and the lock of this process, and whether
    only requests naming a loopback host are answered (a page on another site that rebinds its
    name to 127.0.0.1 names its own host, and is refused)."""

    db: Path
    csrf: str
    lock: threading.Lock
    loopback_only: bool = True
    access: Access | None = None  # beyond loopback: the token and Host names every request needs


STATE = web.AppKey("state", ViewerState)


def make_app(
    db: Path, *, csrf: str | None = None, loopback_only: bool = True, access: Access | None = None
) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=256 * 1024)
    app[STATE] = ViewerState(
        db, csrf or secrets.token_urlsafe(32), threading.Lock(), loopback_only, access
    )
    static = resources.files("rapport.viewer") / "static"
    app.router.add_get("/", overview)
    app.router.add_get("/overview.part", overview_part)
    app.router.add_get("/conversations", conversation_list)
    app.router.add_get("/c/{conversation_id}", conversation)
    app.router.add_post("/c/{conversation_id}/review", review)
    app.router.add_get("/queue", review_queue)
    app.router.add_get("/queue/next", queue_next)
    app.router.add_get("/queue/{queue}", one_queue)
    app.router.add_get("/queue/{queue}/next", queue_next)
    app.router.add_get("/queue/{queue}/done", queue_done)
    app.router.add_get("/agreement", agreement)
    app.router.add_get("/eval", eval_list)
    app.router.add_get("/eval/{eval_id}", eval_page)
    app.router.add_static("/static", Path(str(static)))
    return app


async def _read(request: web.Request, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work` on a connection of its own, off the event loop, one at a time."""
    state = request.app[STATE]

    def run() -> T:
        with state.lock, closing(connect_for_reading(state.db)) as conn:
            return work(conn)

    return await asyncio.to_thread(run)


def _page(request: web.Request, title: str, body: str, **kwargs: str) -> web.Response:
    html = pages.layout(title, body, request.app[STATE].csrf, **kwargs)
    return web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A bad parameter is a 400, a missing conversation a 404, a store problem a 503: each a
    page saying so, never a traceback."""
    if request.app[STATE].loopback_only and _host_name(request.host) not in LOOPBACK_NAMES:
        return _error(
            request, 421, f"this viewer answers requests for 127.0.0.1, not {request.host}"
        )
    access = request.app[STATE].access
    refused = refusal(request, access) if access is not None else None
    if isinstance(refused, tuple):  # the page's form token stays out of a refusal
        return _error(request, *refused, csrf="")
    if refused is not None:
        refused.headers.update(SECURITY_HEADERS)
        return refused
    try:
        response = await handler(request)
    except BadParameter as error:
        return _error(request, 400, str(error))
    except StoreError as error:
        return _error(request, 503, str(error))
    except web.HTTPException as error:
        if error.status >= 400:
            return _error(request, error.status, error.text or error.reason)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def _host_name(host: str) -> str:
    """The Host header without its port."""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _error(
    request: web.Request, status: int, message: str, *, csrf: str | None = None
) -> web.Response:
    token = request.app[STATE].csrf if csrf is None else csrf
    html = pages.layout(str(status), pages.error_body(status, message), token)
    return web.Response(
        status=status, text=html, content_type="text/html", headers=SECURITY_HEADERS
    )


async def overview(request: web.Request) -> web.Response:
    found = await _read(request, overview_reads.overview)
    body = overview_page.body(str(request.app[STATE].db), found)
    return _page(request, "Overview", body, refresh="/overview.part")


async def overview_part(request: web.Request) -> web.Response:
    """The overview's content alone: the page's script swaps it in every few seconds."""
    found = await _read(request, overview_reads.overview)
    return web.Response(
        text=overview_page.body(str(request.app[STATE].db), found), content_type="text/html"
    )


async def conversation_list(request: web.Request) -> web.Response:
    query = list_query(request.query)

    def work(conn: duckdb.DuckDBPyConnection):
        found = viewer_reads.conversation_page(conn, query)
        # why each failed row failed: its judges' assessments, read for this page's rows only
        scores = {row.conversation_id: row.mean_score for row in found.rows if row.passed is False}
        rule = pass_reasons.pass_rule(conn)
        why = {
            cid: reasons.failure_reason(rule, judged, scores[cid], full=False)
            for cid, judged in pass_reasons.assessments_of(conn, list(scores)).items()
        }
        return found, viewer_reads.facets(conn), why

    found, facets, why = await _read(request, work)
    pages_in_all = max(1, -(-found.total // query.per_page))
    if query.page > pages_in_all:
        raise BadParameter(f"page: {query.page:,} is past the last page, {pages_in_all:,}")
    return _page(request, "Conversations", pages.list_body(query, found, facets, why))


def _conversation_id(request: web.Request) -> str:
    cid = request.match_info["conversation_id"]
    if len(cid) > 200 or "\x00" in cid:
        raise BadParameter("conversation id: not one Rapport makes")
    return cid


def _reviewer(request: web.Request) -> str | None:
    """Who is reviewing: the name the page's script keeps in a cookie (a save sets it too)."""
    name = unquote(request.cookies.get(REVIEWER_COOKIE, "")).strip()
    return name if 0 < len(name) <= MAX_REVIEWER else None


def _queue_name(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return review_queues.check_queue_name(value)
    except StoreError as error:
        raise BadParameter(f"queue: {error}") from None


async def conversation(request: web.Request) -> web.Response:
    cid = _conversation_id(request)
    unknown = sorted(set(request.query) - {"queue"})
    if unknown:
        raise BadParameter(f"unknown parameter {unknown[0]!r}")
    queue = _queue_name(request.query.get("queue"))
    reviewer = _reviewer(request)

    def work(conn: duckdb.DuckDBPyConnection):
        detail = viewer_reads.conversation_detail(conn, cid)
        place = review_queues.place(conn, cid, queue, reviewer)
        return detail, place, review_queues.memberships(conn, cid)

    detail, place, queued_in = await _read(request, work)
    if detail is None:
        raise web.HTTPNotFound(text=f"no conversation {cid!r}")
    body = review_page.conversation_body(
        detail, request.app[STATE].csrf, reviewer=reviewer, place=place, queued_in=queued_in
    )
    return _page(request, cid, body)


async def review(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cid = _conversation_id(request)
    form = await request.post()
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text=f"a form from {origin} cannot post here")
    token = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(token.encode(), state.csrf.encode()):
        raise web.HTTPForbidden(text="missing or wrong form token: reload the page")
    reviewer = str(form.get("reviewer", "")).strip()
    if not reviewer or len(reviewer) > MAX_REVIEWER:
        raise BadParameter(f"reviewer: a name of 1 to {MAX_REVIEWER} characters")
    note = str(form.get("note", "")).strip()[:MAX_NOTE] or None
    detail = await _read(request, lambda conn: viewer_reads.conversation_detail(conn, cid))
    if detail is None:
        raise web.HTTPNotFound(text=f"no conversation {cid!r}")
    criteria = {criterion.id for criterion in detail.criteria}
    answers: dict[str, str] = {}
    for name, value in form.items():
        if name.startswith("c:"):
            criterion, answer = name[2:], str(value)
            if criterion not in criteria or answer not in ANSWERS:
                raise BadParameter(f"{name}: not a criterion of this rubric, or not YES/NO/NA")
            answers[criterion] = answer
    if not answers:
        raise BadParameter("a review needs at least one criterion answered (YES, NO or NA)")
    overall = str(form.get(OVERALL, ""))
    if overall not in ("YES", "NO"):
        raise BadParameter("overall: pass (YES) or fail (NO) is needed")
    answers[OVERALL] = overall
    saved = Review(cid, reviewer, answers, note)
    queue = _queue_name(str(form.get("queue", "")) or None)

    def write() -> str:
        with state.lock:
            save_review(state.db, saved)
        if form.get("then") != "next":
            return review_page.conversation_url(cid, queue)
        with state.lock, closing(connect_for_reading(state.db)) as conn:
            return _next_target(conn, queue, reviewer, after=cid)

    moved = web.Response(status=303, headers={"Location": await asyncio.to_thread(write)})
    moved.set_cookie(REVIEWER_COOKIE, quote(reviewer), samesite="Strict", path="/")
    return moved


def _next_target(
    conn: duckdb.DuckDBPyConnection, queue: str | None, reviewer: str, after: str | None = None
) -> str:
    """Where "next" goes: the reviewer's next unreviewed conversation in the queue (the one
    `after` is in, else the first), or that queue's finished page: never the same page again."""
    if queue is None and after is not None:
        place = review_queues.place(conn, after, None, reviewer)
        queue = place.queue if place is not None else None
    queue = queue or review_queues.first_queue(conn)
    if queue is None:
        return "/queue"
    following = review_queues.next_in_queue(conn, queue, reviewer, after=after)
    if following is None:
        return f"/queue/{quote(queue, safe='')}/done"
    return review_page.conversation_url(following, queue)


async def review_queue(request: web.Request) -> web.Response:
    def work(conn: duckdb.DuckDBPyConnection):
        summaries = review_queues.queues(conn)
        items = {s.name: review_queues.queue_items(conn, s.name) for s in summaries}
        return summaries, items

    summaries, items = await _read(request, work)
    return _page(request, "Review queues", review_page.queues_body(summaries, items))


async def one_queue(request: web.Request) -> web.Response:
    name = _queue_name(request.match_info["queue"]) or ""

    def work(conn: duckdb.DuckDBPyConnection):
        summaries = [s for s in review_queues.queues(conn) if s.name == name]
        return summaries, {name: review_queues.queue_items(conn, name)} if summaries else {}

    summaries, items = await _read(request, work)
    if not summaries:
        raise web.HTTPNotFound(text=f"no queue {name!r}")
    return _page(request, f"Queue {name}", review_page.queues_body(summaries, items))


async def queue_next(request: web.Request) -> web.Response:
    """The reviewer's next unreviewed conversation in the queue, or its finished page."""
    reviewer = request.query.get("reviewer", "").strip() or _reviewer(request) or ""
    if len(reviewer) > MAX_REVIEWER:
        raise BadParameter(f"reviewer: a name of 1 to {MAX_REVIEWER} characters")
    queue = _queue_name(request.match_info.get("queue"))
    target = await _read(request, lambda conn: _next_target(conn, queue, reviewer))
    raise web.HTTPSeeOther(target)


async def queue_done(request: web.Request) -> web.Response:
    name = _queue_name(request.match_info["queue"]) or ""
    reviewer = _reviewer(request)

    def work(conn: duckdb.DuckDBPyConnection):
        done = review_queues.queue_done(conn, name, reviewer or "")
        left = review_queues.next_in_queue(conn, name, reviewer or "")
        return done, left

    done, left = await _read(request, work)
    if done is None:
        raise web.HTTPNotFound(text=f"no queue {name!r}")
    remaining = done.size - done.reviewed if left is not None else 0
    return _page(request, f"Queue {name}", review_page.done_body(done, reviewer, remaining))


async def agreement(request: web.Request) -> web.Response:
    def work(conn: duckdb.DuckDBPyConnection):
        return agreement_reads.agreement(conn), review_queues.strategy_agreement(conn)

    found, by_strategy = await _read(request, work)
    body = agreement_page.body(found) + review_page.strategy_section(by_strategy)
    return _page(request, "Judge vs people", body)


async def eval_list(request: web.Request) -> web.Response:
    def work(conn: duckdb.DuckDBPyConnection):
        return viewer_reads.evaluations(conn), viewer_reads.iterations(conn)

    runs, rounds = await _read(request, work)
    return _page(request, "Evaluations", pages.eval_list_body(runs, rounds))


async def eval_page(request: web.Request) -> web.Response:
    eval_id = request.match_info["eval_id"]
    if len(eval_id) > 200 or "\x00" in eval_id:
        raise BadParameter("eval id: not one Rapport makes")
    pairs = await _read(request, lambda conn: viewer_reads.eval_pairs(conn, eval_id))
    if pairs is None:
        raise web.HTTPNotFound(text=f"no evaluation {eval_id!r}")
    return _page(request, f"Evaluation {eval_id}", pages.eval_body(eval_id, pairs))
