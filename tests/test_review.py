"""People's review: a review posted on the page is stored (a re-review replaces it) and moves the
judge-vs-people figures in the page, `rapport stats` and `rapport report`; kappa is Cohen's;
`rapport review sample` draws a seeded, stratified queue the page walks; a review posted while
`rapport generate` writes the same file waits its turn and the run still finishes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import duckdb
import pytest

from rapport.store.errors import StoreError
from rapport.store.reviews import Review, save_review
from tests.conftest import rapport_in_process
from tests.viewer_helpers import judged_corpus, serving


@pytest.fixture
def corpus(tmp_path):
    return judged_corpus(tmp_path, 10)


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


def pass_rule_matrix(page: str) -> str:
    """The judge-vs-people matrix of the pass rule across judges, on pass/fail."""
    found = re.search(
        r"<table class='confusion' data-criterion='overall' data-judge='\(pass rule\)'>.*?</table>",
        page,
    )
    assert found, page[-2000:]
    return found.group(0)


def test_a_review_is_stored_replaced_and_moves_the_agreement(corpus):
    db, cid = corpus
    (judge_passed,) = sql(
        db, "SELECT passed FROM conversation_judgement WHERE conversation_id = ?", [cid]
    )[0]
    agreeing = "YES" if judge_passed else "NO"
    with serving(db) as viewer:
        token = viewer.token()
        fields = {"csrf": token, "reviewer": "ann", "overall": agreeing, "c:CQ1": "YES"}
        status, location = viewer.post(f"/c/{cid}/review", {**fields, "note": "fine <b>x</b>"})
        assert (status, location) == (303, f"/c/{cid}")
        assert sql(
            db, "SELECT criterion_id, answer, note FROM human_verdicts ORDER BY criterion_id"
        ) == [("CQ1", "YES", "fine <b>x</b>"), ("overall", agreeing, "fine <b>x</b>")]
        page = viewer.get(f"/c/{cid}", headers={"Cookie": "rapport_reviewer=ann"})[1]
        assert "fine &lt;b&gt;x&lt;/b&gt;" in page  # ann's own note, back in her form
        first = viewer.get("/agreement")[1]
        assert "agreement 100 %" in pass_rule_matrix(first)
        assert "1 conversation, 1 review by 1 person" in pass_rule_matrix(first)

        disagreeing = "NO" if agreeing == "YES" else "YES"
        status, _ = viewer.post(f"/c/{cid}/review", {**fields, "overall": disagreeing})
        assert status == 303
        assert sql(db, "SELECT criterion_id, answer, note FROM human_verdicts ORDER BY 1") == [
            ("CQ1", "YES", None),
            ("overall", disagreeing, None),
        ]
        assert viewer.get("/conversations?reviewed=yes")[1].count("<tr class='conversation'") == 1
        unreviewed = viewer.get("/conversations?reviewed=no&per_page=500")[1]
        assert unreviewed.count("<tr class='conversation'") == 9 and cid not in unreviewed
        assert viewer.get("/conversations?reviewed=maybe")[0] == 400
        second = viewer.get("/agreement")[1]
        assert "agreement 0 %" in pass_rule_matrix(second)


@pytest.mark.parametrize(
    "fields",
    [
        {"reviewer": "", "overall": "YES"},
        {"reviewer": "ann", "overall": "MAYBE"},
        {"reviewer": "ann"},
        {"reviewer": "ann", "overall": "YES"},  # no criterion answered
        {"reviewer": "ann", "overall": "YES", "c:NOPE": "YES"},
        {"reviewer": "ann", "overall": "YES", "c:CQ1": "PERHAPS"},
        {"reviewer": "x" * 200, "overall": "YES"},
    ],
)
def test_a_bad_review_is_400_and_stores_nothing(corpus, fields):
    db, cid = corpus
    with serving(db) as viewer:
        status, _ = viewer.post(f"/c/{cid}/review", {"csrf": viewer.token(), **fields})
    assert status == 400
    assert sql(db, "SELECT count(*) FROM human_verdicts") == [(0,)]


def _seed_answers(db: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """(conversation, judge-or-reviewer side, criterion, answer): people's rows go in as
    reviews, judges' replace the stored verdicts of the same criterion."""
    for cid, reviewer, criterion, answer in rows:
        save_review(db, Review(cid, reviewer, {criterion: answer, "overall": "YES"}))


def test_kappa_is_cohens_between_a_person_and_a_judge(corpus):
    db, _ = corpus
    ids = [cid for (cid,) in sql(db, "SELECT conversation_id FROM conversations ORDER BY 1")][:4]
    with duckdb.connect(str(db)) as conn:  # judge a's CQ1 on four conversations: Y N N N
        for cid, answer in zip(ids, ["YES", "NO", "NO", "NO"], strict=True):
            conn.execute(
                "UPDATE verdicts SET answer = ? WHERE conversation_id = ? AND judge_id = 'a' "
                "AND criterion_id = 'CQ1'",
                [answer, cid],
            )
    # the person: Y Y N N → agreement 3/4, chance (2·1 + 2·3)/16 = 1/2, kappa (0.75-0.5)/0.5
    _seed_answers(
        db, [(cid, "ann", "CQ1", a) for cid, a in zip(ids, ["YES", "YES", "NO", "NO"], strict=True)]
    )
    assert sql(
        db,
        "SELECT items, percent_agreement, kappa FROM human_judge_agreement "
        "WHERE criterion_id = 'CQ1' AND judge_id = 'a'",
    ) == [(4, 0.75, 0.5)]
    assert sql(
        db,
        "SELECT human_answer, judge_answer, items FROM human_judge_confusion "
        "WHERE criterion_id = 'CQ1' AND judge_id = 'a' ORDER BY ALL",
    ) == [("NO", "NO", 2), ("YES", "NO", 1), ("YES", "YES", 1)]
    # a second reviewer: Y N N Y against ann's Y Y N N → 2/4, chance 1/2, kappa 0
    _seed_answers(
        db, [(cid, "bob", "CQ1", a) for cid, a in zip(ids, ["YES", "NO", "NO", "YES"], strict=True)]
    )
    assert sql(
        db,
        "SELECT reviewer_a, reviewer_b, items, percent_agreement, kappa FROM reviewer_agreement "
        "WHERE criterion_id = 'CQ1'",
    ) == [("ann", "bob", 4, 0.5, 0.0)]


def test_stats_and_report_show_judge_vs_people_once_reviewed(corpus, tmp_path):
    db, cid = corpus
    before = rapport_in_process("stats", "--db", str(db))
    assert "Judge vs people" not in before.stdout
    save_review(db, Review(cid, "ann", {"overall": "YES", "CQ1": "NO"}))
    after = rapport_in_process("stats", "--db", str(db))
    assert after.returncode == 0, after
    assert "Judge vs people per criterion" in after.stdout
    assert "Reviewers' agreement" in after.stdout
    out = tmp_path / "report"
    written = rapport_in_process("report", "--db", str(db), "--out", str(out))
    assert written.returncode == 0, written
    assert "Judge vs people per criterion" in (out / "report.md").read_text()


def test_save_review_refuses_what_it_cannot_store(corpus):
    db, cid = corpus
    with pytest.raises(StoreError, match="overall"):
        save_review(db, Review(cid, "ann", {"CQ1": "YES"}))
    with pytest.raises(StoreError, match="no conversation"):
        save_review(db, Review("nope", "ann", {"overall": "YES"}))
    assert sql(db, "SELECT count(*) FROM human_verdicts") == [(0,)]


def test_review_sample_is_seeded_stratified_and_walked(corpus):
    db, _ = corpus
    first = rapport_in_process(
        "review", "sample", "--db", str(db), "--n", "6", "--stratify", "passed", "--seed", "3"
    )
    assert first.returncode == 0, first
    assert "6 conversations queued" in first.stdout
    queued = sql(db, "SELECT conversation_id, stratum FROM review_queue ORDER BY position")
    rapport_in_process(
        "review", "sample", "--db", str(db), "--n", "6", "--stratify", "passed", "--seed", "3"
    )
    assert sql(db, "SELECT conversation_id, stratum FROM review_queue ORDER BY position") == queued
    strata = {stratum for _, stratum in queued}
    passed = sql(db, "SELECT count(*) FILTER (WHERE passed), count(*) FILTER (WHERE NOT passed) "
                     "FROM conversation_judgement")[0]  # fmt: skip
    if all(passed):  # both kinds exist: both are drawn from
        assert strata == {"passed", "failed"}
    with serving(db) as viewer:
        page = viewer.get("/queue")[1]
        assert all(cid in page for cid, _ in queued)
        first_id = queued[0][0]
        status, _ = viewer.post(
            f"/c/{first_id}/review",
            {
                "csrf": viewer.token(),
                "reviewer": "ann",
                "overall": "YES",
                "c:CQ1": "NA",
                "then": "next",
            },
        )
        assert status == 303
        with urllib.request.urlopen(viewer.base + "/queue/next?reviewer=ann") as answer:
            assert answer.url.endswith(f"/c/{queued[1][0]}?queue=default")
        assert "ann" in viewer.get("/queue")[1]


@pytest.mark.slow
def test_a_review_waits_its_turn_while_generate_writes_and_the_run_finishes(tmp_path):
    db, cid = judged_corpus(tmp_path, 2)
    env = {
        **os.environ,
        "RAPPORT_STORE_LEND_EVERY_S": "0.3",
        "RAPPORT_STORE_READER_WAIT_S": "30",
    }
    before = sql(db, "SELECT count(*) FROM conversations WHERE status = 'complete'")[0][0]
    with serving(db, env=env) as viewer:
        token = viewer.token()
        run = subprocess.Popen(
            [sys.executable, "-m", "rapport", "generate", "--db", str(db), "--count", "150",
             "--turns", "3", "--backend", "simulated"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        pages = reviews = 0
        while run.poll() is None:
            assert viewer.get("/")[0] == 200
            assert viewer.get("/conversations?sort=exchanges&order=desc")[0] == 200
            pages += 2
            overall = "YES" if reviews % 2 else "NO"
            fields = {"csrf": token, "reviewer": "ann", "overall": overall, "c:CQ1": "YES"}
            assert viewer.post(f"/c/{cid}/review", fields)[0] == 303
            reviews += 1
        _, stderr = run.communicate()
    assert run.returncode == 0, stderr
    assert reviews >= 1 and pages >= 2, "the run ended before the page was read"
    complete = sql(db, "SELECT count(*) FROM conversations WHERE status = 'complete'")
    assert complete == [(before + 150,)]  # a plan of its own: the run's 150 beside the 2
    assert sql(db, "SELECT count(*) FROM human_verdicts WHERE reviewer = 'ann'") == [(2,)]
