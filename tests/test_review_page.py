"""The review-first page over real HTTP: blind until this reviewer saved (then the others' answers,
marked whose), the queue's progress and the reason a conversation is in it, "save and next" that
ends on the queue-finished page instead of the same page or a 404, a review without a criterion
refused, and κ per strategy with its caveat."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from urllib.parse import quote

import duckdb
import pytest

from rapport.store.review_queues import sample_queue
from tests.viewer_helpers import judged_corpus, serving


@pytest.fixture
def corpus(tmp_path):
    db, _ = judged_corpus(tmp_path, 8)
    sample_queue(db, 3, strategy="disagreement", queue="hard", reviewer="ann", seed=1)
    return db


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


def get(viewer, path: str, reviewer: str | None = None) -> tuple[int, str, str]:
    """GET as `reviewer` (the cookie the page's script sets); redirects are followed."""
    headers = {"Cookie": f"rapport_reviewer={quote(reviewer)}"} if reviewer else {}
    request = urllib.request.Request(viewer.base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), response.url
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), path


def review(viewer, cid: str, reviewer: str, then: str = "stay", **extra: str) -> tuple[int, str]:
    fields = {"csrf": viewer.token(), "reviewer": reviewer, "overall": "NO", "c:CQ1": "YES"}
    return viewer.post(f"/c/{cid}/review", {**fields, "then": then, **extra})


def queued(db) -> list[tuple[str, str]]:
    return sql(
        db,
        "SELECT conversation_id, reason FROM review_queue WHERE queue = 'hard' ORDER BY position",
    )


def test_another_reviewers_answers_stay_hidden_until_this_reviewer_saved(corpus):
    cid, _ = queued(corpus)[0]
    with serving(corpus) as viewer:
        assert review(viewer, cid, "ann-first", note="ann's private note")[0] == 303
        for reviewer in (None, "bob"):
            page = get(viewer, f"/c/{cid}", reviewer)[1]
            assert "ann-first" not in page and "private note" not in page
            assert "id='blind'" in page
        assert review(viewer, cid, "bob")[0] == 303
        after = get(viewer, f"/c/{cid}", "bob")[1]
        (shown,) = re.findall(r"<li class='other-review'>(.*?)</li>", after)
        assert shown.startswith("<b>ann-first</b>: fail · CQ1 YES")
        assert "ann&#x27;s private note" in shown
        # bob's own answers come back for the form to fill in, nobody else's
        earlier = re.search(r"data-earlier='([^']*)'", after).group(1)
        assert "bob" in earlier and "ann" not in earlier


def test_the_page_shows_progress_in_its_queue_and_why_it_is_queued(corpus):
    items = queued(corpus)
    cid, reason = items[1]
    with serving(corpus) as viewer:
        review(viewer, items[0][0], "ann")
        page = get(viewer, f"/c/{cid}?queue=hard", "ann")[1]
        assert "<b>2 of 3 in queue <a href='/queue/hard'>hard</a></b> · 1 reviewed by you" in page
        assert f"in queue <b>hard</b>: {reason}".replace("'", "&#x27;") in page
        assert reason.startswith("judges disagree")
        listing = get(viewer, "/queue")[1]
        assert "<td>disagreement</td><td>ann</td><td>1 of 3 reviewed</td>" in listing
        assert get(viewer, "/c/x?queue=a%20b")[0] == 400


def test_save_and_next_walks_the_queue_and_ends_on_the_finished_page(corpus):
    ids = [cid for cid, _ in queued(corpus)]
    with serving(corpus) as viewer:
        targets = [review(viewer, cid, "ann", then="next", queue="hard")[1] for cid in ids]
        assert targets == [f"/c/{ids[1]}?queue=hard", f"/c/{ids[2]}?queue=hard",
                           "/queue/hard/done"]  # fmt: skip
        status, page, url = get(viewer, "/queue/hard/next", "ann")
        assert (status, url) == (200, viewer.base + "/queue/hard/done")
        assert "<h1 id='queue-finished'>Queue hard finished</h1>" in page
        assert "ann reviewed 3 of the 3 conversations in it" in page
        assert "0 passed, 3 failed" in page
        assert "href='/agreement'" in page
        # another reviewer starts at the top; an unknown queue is a 404, not an empty page
        assert get(viewer, "/queue/hard/next", "bob")[2] == viewer.base + f"/c/{ids[0]}?queue=hard"
        assert get(viewer, "/queue/nope/done", "ann")[0] == 404


def test_a_review_without_a_criterion_answered_is_refused(corpus):
    cid, _ = queued(corpus)[0]
    with serving(corpus) as viewer:
        fields = {"csrf": viewer.token(), "reviewer": "ann", "overall": "YES"}
        status, page = viewer.post(f"/c/{cid}/review", fields)
    assert status == 400 and "at least one criterion" in page
    assert sql(corpus, "SELECT count(*) FROM human_verdicts") == [(0,)]


def test_agreement_shows_kappa_per_strategy_and_that_disagreement_is_no_random_sample(corpus):
    ids = [cid for cid, _ in queued(corpus)]
    with serving(corpus) as viewer:
        for cid in ids:
            review(viewer, cid, "ann")
        page = get(viewer, "/agreement")[1]
    section = page.split("<section id='by-strategy'>", 1)[1]
    assert "<td>disagreement</td><td>3</td><td>3</td>" in section
    assert "drawn by disagreement (or borderline) is not a random sample" in section
