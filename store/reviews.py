"""People's verdicts (`human_verdicts`): with the review queues (store.review_queues), the only
tables `rapport view` writes.

A write opens the file for one short transaction through `database.connect`, which asks a
running `generate` for its turn (store.database's lending) and waits for it, so the run never
fails: its own writes wait beside the file meanwhile and are applied when the review is in.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import msgspec

from rapport.store.database import connect, connect_for_reading
from rapport.store.errors import StoreError
from rapport.store.rows import utc_now
from rapport.store.transaction import transaction

ANSWERS = frozenset({"YES", "NO", "NA"})
OVERALL = "overall"  # the reviewer's pass/fail: YES = pass, NO = fail
WRITE_WAIT_S = 60.0  # how long a review waits for a run to lend the file


class Review(msgspec.Struct, frozen=True):
    conversation_id: str
    reviewer: str
    answers: dict[str, str]  # criterion_id (or `overall`) → YES | NO | NA
    note: str | None = None


def save_review(path: Path, review: Review, *, wait_s: float = WRITE_WAIT_S) -> int:
    """Store one reviewer's answers for one conversation, replacing their earlier ones; the
    number of answers stored."""
    bad = {answer for answer in review.answers.values() if answer not in ANSWERS}
    if bad:
        raise StoreError(f"answers must be YES, NO or NA, not {sorted(bad)}")
    if review.answers.get(OVERALL) not in ("YES", "NO"):
        raise StoreError("a review needs an overall pass or fail")
    connect_for_reading(path).close()  # brings an older file's schema up to date first
    with closing(connect(path, wait_s=wait_s)) as conn, transaction(conn):
        if not conn.execute(
            "SELECT 1 FROM conversations WHERE conversation_id = ?", [review.conversation_id]
        ).fetchone():
            raise StoreError(f"no conversation {review.conversation_id!r}")
        conn.execute(
            "DELETE FROM human_verdicts WHERE conversation_id = ? AND reviewer = ?",
            [review.conversation_id, review.reviewer],
        )
        now = utc_now()
        conn.executemany(
            "INSERT INTO human_verdicts VALUES (?, ?, ?, ?, ?, ?)",
            [
                (review.conversation_id, review.reviewer, criterion, answer, review.note, now)
                for criterion, answer in sorted(review.answers.items())
            ],
        )
    return len(review.answers)
