"""People's verdicts (`human_verdicts`) and the review queue (`review_queue`): the only tables
`rapport view` writes.

A write opens the file for one short transaction through `database.connect`, which asks a
running `generate` for its turn (store.database's lending) and waits for it, so the run never
fails: its own writes wait beside the file meanwhile and are applied when the review is in.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import duckdb
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


STRATA = frozenset({"topic", "passed", "status", "flaw"})


class QueueSummary(msgspec.Struct, frozen=True):
    queued: int
    strata: dict[str, int]  # stratum → conversations drawn from it


def sample_queue(
    path: Path, n: int, *, stratify: tuple[str, ...] = (), seed: int = 0
) -> QueueSummary:
    """Draw `n` complete corpus conversations into `review_queue` (replacing it), spread evenly
    over the strata (a stratum with fewer gives what it has, the rest go to the others);
    the same seed draws the same queue."""
    unknown = [name for name in stratify if name not in STRATA]
    if unknown:
        raise StoreError(
            f"--stratify: unknown {', '.join(unknown)} (choose from {', '.join(sorted(STRATA))})"
        )
    with closing(connect_for_reading(path)) as conn:
        rows = conn.execute(
            "SELECT o.conversation_id, o.status, o.topic_categories[1], o.flaw_names[1], "
            "j.passed FROM conversation_overview o "
            "LEFT JOIN conversation_judgement j USING (conversation_id) "
            "WHERE o.status = 'complete' ORDER BY o.conversation_id"
        ).fetchall()
    if not rows:
        raise StoreError(f"{path}: no complete conversation to review")
    strata: dict[str, list[str]] = {}
    for cid, status, topic, flaw, passed in rows:
        values = {
            "topic": topic or "(none)",
            "flaw": flaw or "(none)",
            "status": status,
            "passed": {True: "passed", False: "failed", None: "unjudged"}[passed],
        }
        key = " · ".join(values[name] for name in stratify) or "all"
        strata.setdefault(key, []).append(cid)
    drawn = _draw(strata, n, random.Random(seed))
    now = utc_now()
    with closing(connect(path, wait_s=WRITE_WAIT_S)) as conn, transaction(conn):
        conn.execute("DELETE FROM review_queue")
        conn.executemany(
            "INSERT INTO review_queue VALUES (?, ?, ?, ?)",
            [(cid, position, key, now) for position, (key, cid) in enumerate(drawn)],
        )
    counts: dict[str, int] = {}
    for key, _ in drawn:
        counts[key] = counts.get(key, 0) + 1
    return QueueSummary(len(drawn), counts)


def _draw(strata: Mapping[str, list[str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """Round-robin over the strata (each shuffled), then shuffled: an even spread, seeded."""
    pools = {key: rng.sample(ids, len(ids)) for key, ids in sorted(strata.items())}
    drawn: list[tuple[str, str]] = []
    while len(drawn) < n and any(pools.values()):
        for key, pool in pools.items():
            if pool and len(drawn) < n:
                drawn.append((key, pool.pop()))
    rng.shuffle(drawn)
    return drawn


class QueueItem(msgspec.Struct, frozen=True):
    position: int
    conversation_id: str
    stratum: str | None
    reviewers: list[str]  # who reviewed it already


def queue(conn: duckdb.DuckDBPyConnection) -> list[QueueItem]:
    """The review queue in order, with who reviewed each conversation."""
    return [
        QueueItem(position, cid, stratum, list(reviewers or []))
        for position, cid, stratum, reviewers in conn.execute(
            "SELECT q.position, q.conversation_id, q.stratum, "
            "list(DISTINCT h.reviewer ORDER BY h.reviewer) FILTER (WHERE h.reviewer IS NOT NULL) "
            "FROM review_queue q LEFT JOIN human_verdicts h USING (conversation_id) "
            "GROUP BY ALL ORDER BY q.position"
        ).fetchall()
    ]


def next_unreviewed(
    conn: duckdb.DuckDBPyConnection, reviewer: str, after: str | None = None
) -> str | None:
    """The first queued conversation `reviewer` has not reviewed (after `after`, when given)."""
    items = queue(conn)
    start = 0
    if after is not None:
        start = next((i + 1 for i, item in enumerate(items) if item.conversation_id == after), 0)
    for item in items[start:] + items[:start]:
        if reviewer not in item.reviewers:
            return item.conversation_id
    return None
