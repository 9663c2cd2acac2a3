"""`rapport view` over real HTTP, in a process of its own: filters and paging give the
conversations SQL gives, model text is escaped, bad parameters are 400s, POSTs need the token,
and the database is opened read-only except for reviews."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import duckdb
import pytest

from tests.conftest import error_lines, rapport_in_process
from tests.viewer_helpers import HOSTILE_MARK, judged_corpus, serving

COUNT = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return judged_corpus(tmp_path_factory.mktemp("viewer"), COUNT)


@pytest.fixture(scope="module")
def viewer(corpus):
    with serving(corpus[0]) as running:
        yield running


def listed(page: str) -> list[str]:
    return re.findall(r"<tr class='conversation' data-id='([^']+)'>", page)


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


def test_overview_shows_status_counts_pass_rate_and_scores(viewer, corpus):
    status, page, headers = viewer.get("/")
    assert status == 200
    for title in ("Conversations by status", "Pass rate", "Score histogram", "By topic"):
        assert title in page
    assert f"<td class='word'>complete</td><td class='num'>{COUNT}</td>" in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    refreshed_status, part, _ = viewer.get("/overview.part")
    assert refreshed_status == 200 and "Conversations by status" in part


def test_filters_give_the_conversations_sql_gives(viewer, corpus):
    db, _ = corpus
    passing = sorted(
        cid for (cid,) in sql(db, "SELECT conversation_id FROM conversation_judgement WHERE passed")
    )
    failing = sorted(
        cid
        for (cid,) in sql(db, "SELECT conversation_id FROM conversation_judgement WHERE NOT passed")
    )
    assert passing and failing, "the simulated judges should pass some and fail some"
    assert listed(viewer.get("/conversations?passed=yes&per_page=500")[1]) == passing
    assert listed(viewer.get("/conversations?passed=no&per_page=500")[1]) == failing
    (topic,) = sql(db, "SELECT topic_category FROM by_topic ORDER BY conversations LIMIT 1")[0]
    with_topic = sorted(
        cid
        for (cid,) in sql(
            db,
            "SELECT conversation_id FROM conversation_overview "
            "WHERE list_contains(topic_categories, ?)",
            [topic],
        )
    )
    assert listed(viewer.get(f"/conversations?topic={topic}&per_page=500")[1]) == with_topic
    low = sorted(
        cid
        for (cid,) in sql(
            db, "SELECT conversation_id FROM conversation_judgement WHERE mean_score <= 0.5"
        )
    )
    assert listed(viewer.get("/conversations?score_max=0.5&per_page=500")[1]) == low
    (criterion,) = sql(db, "SELECT min(criterion_id) FROM verdicts WHERE answer = 'NO'")[0]
    failed_it = sorted(
        cid
        for (cid,) in sql(
            db,
            "SELECT DISTINCT conversation_id FROM verdicts WHERE criterion_id = ? AND answer = 'NO'",
            [criterion],
        )
    )
    assert listed(viewer.get(f"/conversations?failed={criterion}&per_page=500")[1]) == failed_it
    (attribute, value) = sql(
        db,
        "SELECT a.key, a.value ->> '$' FROM scenarios s "
        "CROSS JOIN json_each(s.persona -> '$.attributes') a ORDER BY 1, 2 LIMIT 1",
    )[0]
    with_persona = sorted(
        cid
        for (cid,) in sql(
            db,
            "SELECT c.conversation_id FROM conversations c JOIN scenarios s USING (scenario_id) "
            "WHERE s.persona -> '$.attributes' ->> ? = ?",
            [attribute, value],
        )
    )
    page = viewer.get(f"/conversations?persona={attribute}%3D{value}&per_page=500")[1]
    assert listed(page) == with_persona
    assert listed(viewer.get("/conversations?judge=a&per_page=500")[1]) == sorted(passing + failing)
    assert listed(viewer.get("/conversations?judge=nobody")[1]) == []


def test_full_text_search_finds_the_message(viewer, corpus):
    _, hostile_id = corpus
    page = viewer.get(f"/conversations?q={HOSTILE_MARK.upper()}")[1]
    assert listed(page) == [hostile_id]
    assert "1 conversations match" in page


def test_paging_walks_every_conversation_once_in_sort_order(viewer, corpus):
    db, _ = corpus
    by_score = [
        cid
        for (cid,) in sql(
            db,
            "SELECT conversation_id FROM conversation_judgement "
            "ORDER BY mean_score DESC NULLS LAST, conversation_id DESC",
        )
    ]
    seen: list[str] = []
    for number in range(1, 4):
        page = viewer.get(f"/conversations?sort=score&order=desc&per_page=5&page={number}")[1]
        seen += listed(page)
        assert f"page {number} of 3" in page
    assert seen == by_score
    status, page, _ = viewer.get("/conversations?per_page=5&page=9")
    assert status == 400 and "page: 9 is past the last page, 3" in page


def test_model_text_is_escaped_everywhere_it_shows(viewer, corpus):
    _, hostile_id = corpus
    status, page, _ = viewer.get(f"/c/{hostile_id}")
    assert status == 200
    assert "&lt;script&gt;document.body.dataset.pwned" in page
    assert "&lt;img src=&quot;x&quot; onerror=" in page
    assert "<script>document" not in page
    assert "<img src" not in page
    assert page.count("<script") == page.count("<script src='/static/")  # the page's own


def test_a_conversation_page_shows_turns_scenario_verdicts_and_figures(viewer, corpus):
    db, hostile_id = corpus
    page = viewer.get(f"/c/{hostile_id}")[1]
    messages = sql(db, "SELECT count(*) FROM messages WHERE conversation_id = ?", [hostile_id])
    assert page.count("<div class='turn ") == messages[0][0]
    verdict_rows = sql(
        db,
        "SELECT (SELECT count(*) FROM verdicts WHERE conversation_id = $1) "
        "+ (SELECT count(*) FROM simulator_verdicts WHERE conversation_id = $1)",
        [hostile_id],
    )
    assert page.count("<td class='answer ") == verdict_rows[0][0]  # both sides' verdicts
    for needle in ("Scenario", "<b>persona</b>", "<b>topic</b>", "out tokens", "mean score"):
        assert needle in page
    (reasoning,) = sql(
        db, "SELECT min(reasoning) FROM verdicts WHERE conversation_id = ?", [hostile_id]
    )[0]
    assert reasoning.split("(")[0] in page


@pytest.mark.parametrize(
    "query",
    [
        "page=abc",
        "page=0",
        "page=-1",
        "per_page=100000",
        "score_min=2",
        "score_min=nan",
        "score_max=lots",
        "score_min=0.9&score_max=0.1",
        "sort=content%3BDROP%20TABLE%20messages",
        "order=sideways",
        "passed=maybe",
        "persona=noequals",
        "bogus=1",
        "q=" + "x" * 300,
        "status=%00",
    ],
)
def test_bad_query_parameters_answer_400(viewer, query):
    status, page, _ = viewer.get(f"/conversations?{query}")
    assert status == 400, page
    assert "class='error'" in page


def test_an_unknown_conversation_or_page_is_404(viewer):
    assert viewer.get("/c/nope")[0] == 404
    assert viewer.get("/sql?q=select+1")[0] == 404


def test_a_post_without_the_token_is_refused_and_stores_nothing(viewer, corpus):
    db, hostile_id = corpus
    fields = {"reviewer": "mallory", "overall": "NO"}
    assert viewer.post(f"/c/{hostile_id}/review", fields)[0] == 403
    assert viewer.post(f"/c/{hostile_id}/review", {**fields, "csrf": "guess"})[0] == 403
    assert sql(db, "SELECT count(*) FROM human_verdicts WHERE reviewer = 'mallory'") == [(0,)]


def test_a_post_from_another_origin_is_refused_even_with_the_token(viewer, corpus):
    db, hostile_id = corpus
    data = urllib.parse.urlencode(
        {"csrf": viewer.token(), "reviewer": "mallory", "overall": "NO"}
    ).encode()
    request = urllib.request.Request(
        f"{viewer.base}/c/{hostile_id}/review", data=data, headers={"Origin": "http://evil.example"}
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        status = 200
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 403
    assert sql(db, "SELECT count(*) FROM human_verdicts WHERE reviewer = 'mallory'") == [(0,)]


def test_the_page_never_writes_outside_reviews(viewer, corpus):
    db, _ = corpus
    before = sql(db, "SELECT count(*), max(created_at) FROM messages")
    for path in ("/", "/conversations?sort=cost", "/queue", "/agreement"):
        assert viewer.get(path)[0] == 200
    assert sql(db, "SELECT count(*), max(created_at) FROM messages") == before


def test_view_refuses_a_missing_database_in_one_line(tmp_path):
    outcome = rapport_in_process("view", "--db", str(tmp_path / "none.duckdb"))
    assert outcome.returncode == 2
    assert len(error_lines(outcome)) == 1 and "no such database" in outcome.stderr


def test_another_host_than_loopback_needs_the_token_it_prints(corpus):
    with serving(corpus[0], "--host", "0.0.0.0") as running:
        assert running.get("/")[0] == 403
        line = running.process.stdout.readline()
    assert "?token=" in line and "every request needs this token" in line


def test_a_request_for_another_host_name_is_refused(viewer):
    """A page elsewhere that rebinds its name to 127.0.0.1 sends its own name as Host."""
    request = urllib.request.Request(viewer.base + "/", headers={"Host": "evil.example:8765"})
    try:
        urllib.request.urlopen(request, timeout=10)
        status = 200
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 421
    assert viewer.get("/")[0] == 200


def test_view_names_a_port_in_use_in_one_line(corpus):
    with serving(corpus[0]) as running:
        port = running.base.rsplit(":", 1)[1]
        outcome = rapport_in_process("view", "--db", str(corpus[0]), "--port", port)
    assert outcome.returncode == 2, outcome
    assert len(error_lines(outcome)) == 1 and f"cannot listen on 127.0.0.1:{port}" in outcome.stderr
