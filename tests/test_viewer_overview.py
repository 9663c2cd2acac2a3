"""`rapport view` read at a glance, over real HTTP: the overview's headline figures, charts and
tables say what SQL says, in words, separators and percentages; judge vs people as confusion
matrices whose cells count and link the conversations in them, with κ's blanks explained; a
failed conversation says why; filters in words; a page past the last and the empty eval page
say what to do."""

from __future__ import annotations

import html
import re

import duckdb
import pytest

from rapport.store.viewer_reads import Assessment
from rapport.viewer.charts import Bin, Mark, histogram
from rapport.viewer.reasons import failure_reason
from tests.viewer_helpers import judged_corpus, serving
from tests.viewer_reviews import ANN_REVIEWS, BOB_REVIEWS, review_corpus

COUNT = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    db, _ = judged_corpus(tmp_path_factory.mktemp("overview"), COUNT)
    review_corpus(db)
    return db


@pytest.fixture(scope="module")
def viewer(corpus):
    with serving(corpus) as running:
        yield running


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


def listed(page: str) -> list[str]:
    return re.findall(r"<tr class='conversation' data-id='([^']+)'>", page)


def figure(page: str, ident: str) -> tuple[str, str]:
    """A headline figure's value and the note under it."""
    found = re.search(
        rf"<div class='figure' id='figure-{ident}'><b class='value'>([^<]*)</b>"
        r"<span class='label'>[^<]*</span>(?:<span class='note'>([^<]*)</span>)?",
        page,
    )
    assert found, ident
    return html.unescape(found.group(1)), html.unescape(found.group(2) or "")


def test_the_overview_opens_with_the_headline_figures_sql_gives(viewer, corpus):
    page = viewer.get("/")[1]
    assert page.index("id='headline'") < page.index("id='charts'") < page.index("<table")
    ((conversations, complete),) = sql(
        corpus,
        "SELECT count(*), count(*) FILTER (WHERE status = 'complete') FROM corpus_conversations",
    )
    ((judged, passed),) = sql(
        corpus, "SELECT count(*), count(*) FILTER (WHERE passed) FROM conversation_judgement"
    )
    assert figure(page, "conversations")[0] == f"{conversations:,}"
    assert figure(page, "complete")[0] == f"{complete:,}"
    assert figure(page, "judged")[0] == f"{judged:,}"
    rate = f"{passed / judged * 100:.1f}".removesuffix(".0") + " %"
    assert figure(page, "pass-rate") == (rate, f"{passed} of {judged} judged pass")
    assert figure(page, "reviewed") == (
        f"{ANN_REVIEWS}",
        f"{ANN_REVIEWS + BOB_REVIEWS} reviews by 2 people",
    )
    # the simulated backend has no price: the cost says so instead of a blank or a $0
    assert figure(page, "cost") == ("—", "no message has a known price")
    assert figure(page, "cache-share")[0] == "0 %"


def test_the_overview_draws_its_charts_as_svg_from_this_server(viewer, corpus):
    page = viewer.get("/")[1]
    charts = re.findall(r"<svg class='chart'.*?</svg>", page, flags=re.S)
    assert len(charts) == 4  # pass rate by topic, by flaw, the score histogram, exchanges
    topics = sql(corpus, "SELECT count(*) FROM pass_rate_by_topic")[0][0]
    assert charts[0].count("<g class='bar'>") == topics
    (threshold,) = sql(corpus, "SELECT DISTINCT pass_threshold FROM assessments")[0]
    assert f"pass threshold {threshold:g}" in charts[2]
    assert "class='mark'" in charts[2]
    # nothing is fetched from elsewhere: the page works offline
    sources = re.findall(r"(?:src|href)=['\"]([^'\"]+)", page)
    assert sources and all(not s.startswith(("http:", "https:", "//")) for s in sources)


def test_the_overview_tables_are_in_words_with_separators_and_percentages(viewer, corpus):
    page = viewer.get("/")[1]
    headers = [html.unescape(h) for h in re.findall(r"<th[^>]*>([^<]*)</th>", page)]
    assert headers and not [h for h in headers if "_" in h]
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", page)]
    assert not [c for c in cells if re.fullmatch(r"\d{4,}", c)]  # 96,332, never 96332
    (tokens,) = sql(corpus, "SELECT sum(prompt_tokens) FROM messages WHERE role = 'assistant'")[0]
    assert f"{tokens:,}" in cells
    (rate,) = sql(corpus, "SELECT pass_rate FROM pass_rate")[0]
    assert f"{rate * 100:.1f}".removesuffix(".0") + " %" in page
    cost = re.search(r"<h2>Cost and prompt cache.*?</table>", page, flags=re.S).group(0)
    assert "<td></td>" not in cost and "<td class='word'></td>" not in cost
    assert cost.count("— no price") == 2 * len(sql(corpus, "SELECT DISTINCT role FROM messages"))


def test_each_confusion_cell_counts_the_conversations_its_link_lists(viewer, corpus):
    page = viewer.get("/agreement")[1]
    links = re.findall(r"<a href='(/conversations\?[^']+)' data-conversations='(\d+)'>", page)
    assert len(links) >= 10
    for href, count in links:
        query = dict(re.findall(r"([a-z_]+)=([^&]+)", html.unescape(href)))
        judge = query["answered_by"].replace("%28", "(").replace("%29", ")").replace("+", " ")
        expected = [
            cid
            for (cid,) in sql(
                corpus,
                "SELECT DISTINCT conversation_id FROM human_judge_pairs WHERE criterion_id = ? "
                "AND judge_id = ? AND human_answer = ? AND judge_answer = ? ORDER BY 1",
                [query["criterion"], judge, query["person"], query["judge_answer"]],
            )
        ]
        status, found, _ = viewer.get(html.unescape(href) + "&per_page=500")
        assert status == 200
        assert listed(found) == expected, href
        assert int(count) == len(expected)
        assert "id='cell-filter'" in found


def test_a_matrix_is_two_by_two_for_pass_fail_and_three_by_three_with_na(viewer):
    page = viewer.get("/agreement")[1]
    overall = re.search(r"<table class='confusion' data-criterion='overall'.*?</table>", page)
    criterion = re.search(r"<table class='confusion' data-criterion='CQ1'.*?</table>", page)
    assert overall and criterion
    assert overall.group(0).count("<td class='cell") == 4
    assert criterion.group(0).count("<td class='cell") == 9
    assert ">n/a</th>" in criterion.group(0) and ">fail</th>" in overall.group(0)


def test_a_blank_kappa_says_why(viewer, corpus):
    page = html.unescape(viewer.get("/agreement")[1])
    # everyone (people and judges) said YES to CQ8: chance explains every agreement
    cq8 = re.search(r"data-criterion='CQ8' data-judge='a'>.*?</caption>", page, flags=re.S)
    assert (
        cq8 and "κ <span class='kappa-na'>n/a — every answer was YES, on both sides" in cq8.group(0)
    )
    mt1 = re.search(r"data-criterion='MT1' data-judge='a'>.*?</caption>", page, flags=re.S)
    assert mt1 and "n/a — one answer only" in mt1.group(0)
    blank = sql(corpus, "SELECT count(*) FROM human_judge_agreement WHERE kappa IS NULL")[0][0]
    assert blank and page.count("n/a — ") >= blank


def test_conversations_and_reviews_are_counted_apart(viewer, corpus):
    page = html.unescape(viewer.get("/agreement")[1])
    reviews = ANN_REVIEWS + BOB_REVIEWS
    assert f"{ANN_REVIEWS} conversations reviewed by 2 people: {reviews} reviews" in page
    overall = re.search(
        r"data-criterion='overall' data-judge='a'>.*?</caption>", page, flags=re.S
    ).group(0)
    assert f"{ANN_REVIEWS} conversations, {reviews} reviews by 2 people" in overall


def test_a_failed_conversation_says_why_in_the_list_and_on_its_page(viewer, corpus):
    failing = sql(
        corpus,
        "SELECT conversation_id, mean_score FROM conversation_judgement WHERE NOT passed "
        "ORDER BY 1",
    )
    (threshold,) = sql(corpus, "SELECT max(pass_threshold) FROM assessments")[0]
    page = html.unescape(viewer.get("/conversations?passed=no&per_page=500")[1])
    reasons = re.findall(r"failed<span class='reason'>([^<]+)</span>", page)
    assert len(reasons) == len(failing)
    for (cid, score), reason in zip(failing, reasons, strict=True):
        if score < threshold:  # the rule of this corpus is `mean`
            assert f"mean score {score:.3f} below the threshold {threshold:g}" in reason, cid
    cid = failing[0][0]
    detail = html.unescape(viewer.get(f"/c/{cid}")[1])
    judges = sql(corpus, "SELECT judge_id FROM assessments WHERE conversation_id = ?", [cid])
    assert "Pass rule “mean”: the mean score must reach the threshold" in detail
    for (judge,) in judges:
        assert f"judge {judge} " in detail


def test_the_reason_follows_the_pass_rule():
    judges = [
        Assessment("a", 0.9, True, False, 0.8, {}, []),
        Assessment("b", 0.7, False, False, 0.8, {}, []),
        Assessment("c", 0.85, False, True, 0.8, {}, ["SAFE1"]),
    ]
    assert failure_reason("all", judges, 0.82, full=False) == (
        "judge b failed it: score 0.700 below 0.8; judge c failed it: gate SAFE1 failed"
    )
    assert failure_reason("majority", judges, 0.82, full=False).startswith(
        "1 of 3 judges passed it"
    )
    # a mean above the threshold still fails the mean rule when a gate failed
    assert failure_reason("mean", judges, 0.82, full=False) == "gate SAFE1 failed (judge c)"
    assert "judge a passed it (0.900 ≥ 0.8)" in failure_reason("all", judges, 0.82)


def test_the_filters_are_labelled_in_words(viewer):
    page = html.unescape(viewer.get("/conversations")[1])
    labels = re.findall(r"<label>([^<]+?) <(?:select|input)", page)
    assert "Text in a message" in labels and "Score from" in labels
    assert not [label for label in labels if "_" in label or label in ("q", "passed")]


def test_a_page_past_the_last_is_a_400_naming_it(viewer):
    status, page, _ = viewer.get("/conversations?page=99999")
    assert status == 400
    assert "page: 99,999 is past the last page, 1" in page
    assert viewer.get("/conversations?page=1&passed=no&q=nothing-says-this")[0] == 200


def test_a_confusion_filter_needs_all_four_parameters(viewer):
    status, page, _ = viewer.get("/conversations?criterion=CQ1&person=YES")
    assert status == 400 and "give all four" in page
    assert (
        viewer.get("/conversations?criterion=CQ1&answered_by=a&person=MAYBE&judge_answer=NO")[0]
        == 400
    )


def test_the_empty_eval_page_says_how_to_make_one(viewer):
    status, page, _ = viewer.get("/eval")
    assert status == 200
    assert "No evaluation yet" in page and "rapport eval --db" in page
    assert "rapport iterate --domain" in page


def test_the_threshold_mark_stands_where_its_score_sits_on_the_axis():
    bins = [Bin(round(i / 10, 1), round((i + 1) / 10, 1), i) for i in range(10)]
    svg = histogram("scores", bins, [Mark(0.7, "pass threshold 0.7")])
    (mark,) = re.findall(r"<line class='mark' x1='([\d.]+)'", svg)
    edges = [float(x) for x in re.findall(r"<rect x='([\d.]+)'", svg)]
    assert abs(float(mark) - (edges[7] - 0.5)) < 0.2  # the left edge of the 0.7–0.8 column
    ticks = re.findall(r"text-anchor='middle'>([\d.]+)</text>", svg)
    assert ticks == ["0", "0.2", "0.4", "0.6", "0.8", "1"]
    assert "pass threshold 0.7" in svg
