"""People's reviews of a judged corpus (tests.viewer_helpers.judged_corpus), made so the judge-vs
-people page has every case to show: two reviewers on some conversations (reviews outnumber
conversations), a criterion everyone answered alike (κ undefined: every answer the same), a
criterion answered once (κ undefined: one answer only), and answers that differ from a judge's."""

from __future__ import annotations

from pathlib import Path

import duckdb

from rapport.store.reviews import Review, save_review

ANN_REVIEWS = 10  # the first conversations, by id
BOB_REVIEWS = 4  # the first of those, reviewed a second time
FLIP = {"YES": "NO", "NO": "YES", "NA": "YES"}


def review_corpus(db: Path) -> None:
    with duckdb.connect(str(db), read_only=True) as conn:
        judged = conn.execute(
            "SELECT j.conversation_id, j.passed, v.answer FROM conversation_judgement j "
            "JOIN verdicts v ON v.conversation_id = j.conversation_id "
            "AND v.judge_id = 'a' AND v.criterion_id = 'CQ1' ORDER BY 1 LIMIT ?",
            [ANN_REVIEWS],
        ).fetchall()
    for index, (cid, passed, cq1) in enumerate(judged):
        overall = "YES" if passed else "NO"
        ann = {
            "overall": FLIP[overall] if index % 3 == 0 else overall,
            "CQ1": FLIP[cq1] if index % 4 == 0 else cq1,
            "CQ8": "YES",  # the judges say YES to it everywhere: all answers alike
        }
        if index == 0:
            ann["MT1"] = "NO"  # answered once: one answer only
        save_review(db, Review(cid, "ann", ann, "checked"))
        if index < BOB_REVIEWS:
            bob = {"overall": overall, "CQ1": "NA" if index == 1 else cq1, "CQ8": "YES"}
            save_review(db, Review(cid, "bob", bob))
