"""Review queues (`review_queue`): drawing one by a strategy, and reading where a reviewer stands.

A queue is worth a person's minute when it holds the conversations the judges cannot settle:
`disagreement` takes those the judges disagree on (the pass rule or a gate first, then the most
criteria), `borderline` those scored nearest the pass threshold, `random` a plain sample (the only
one whose agreement figures speak for the whole corpus). Stratification keeps every category in
the queue in the proportion the candidates hold it; a conversation with several topics counts
for each of them (`topic`), or for the first topic its plan drew (`primary-topic`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from contextlib import closing
from itertools import product
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa

from rapport.store.database import connect, connect_for_reading
from rapport.store.errors import StoreError
from rapport.store.reviews import OVERALL, WRITE_WAIT_S
from rapport.store.rows import utc_now
from rapport.store.transaction import transaction

STRATEGIES = ("random", "disagreement", "borderline")
# What --stratify accepts; `topic` and `flaw` are every one a conversation carries.
STRATA = ("topic", "primary-topic", "flaw", "passed", "status")
DEFAULT_QUEUE = "default"
MAX_QUEUE_NAME = 60
MAX_REVIEWER = 80  # as the page's review form takes it
MAX_REASON_CRITERIA = 5  # criteria named in a disagreement's reason; the rest are counted
LOOKAHEAD = 20  # candidates of a stratum weighed for how little they overfill the others
MAX_NAMED_REVIEWED = 5_000  # up to this many, κ per strategy names its conversations in a list


class Candidate(msgspec.Struct, frozen=True):
    """A conversation that may be drawn: its strata labels, its rank (lower first) and why."""

    conversation_id: str
    labels: dict[str, list[str]]  # stratify name → this conversation's values
    rank: tuple[float, ...]
    reason: str


class Drawn(msgspec.Struct, frozen=True):
    conversation_id: str
    stratum: str
    reason: str


class SampleSummary(msgspec.Struct, frozen=True):
    queue: str
    strategy: str
    queued: int
    candidates: int  # conversations the strategy could draw from
    strata: dict[str, int]  # stratum → conversations carrying it in the queue


def check_queue_name(name: str) -> str:
    """A queue name goes into URLs and pages: letters, digits, `-`, `_` and `.` only."""
    ok = name and len(name) <= MAX_QUEUE_NAME and all(c.isalnum() or c in "-_." for c in name)
    if not ok or name in (".", ".."):
        raise StoreError(
            f"queue name {name!r}: 1 to {MAX_QUEUE_NAME} letters, digits, '-', '_' or '.'"
        )
    return name


def sample_queue(
    path: Path,
    n: int,
    *,
    strategy: str = "random",
    stratify: Sequence[str] = (),
    queue: str = DEFAULT_QUEUE,
    reviewer: str | None = None,
    seed: int = 0,
) -> SampleSummary:
    """Draw `n` complete corpus conversations into queue `queue` (replacing that queue, leaving
    the others), by `strategy`, in proportion over the strata; the same seed draws the same
    queue."""
    check_queue_name(queue)
    if reviewer is not None and not 0 < len(reviewer.strip()) <= MAX_REVIEWER:
        raise StoreError(f"--reviewer: a name of 1 to {MAX_REVIEWER} characters")
    if strategy not in STRATEGIES:
        raise StoreError(f"--strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    unknown = [name for name in stratify if name not in STRATA]
    if unknown:
        raise StoreError(
            f"--stratify: unknown {', '.join(unknown)} (choose from {', '.join(STRATA)})"
        )
    rng = random.Random(seed)
    with closing(connect_for_reading(path)) as conn:
        candidates = _candidates(conn, path, strategy, rng)
    drawn = draw(candidates, n, tuple(stratify))
    if strategy == "random":
        rng.shuffle(drawn)  # a random queue is walked in random order
    else:  # the others most worth a minute first
        rank = {candidate.conversation_id: candidate.rank for candidate in candidates}
        drawn.sort(key=lambda item: rank[item.conversation_id])
    now = utc_now()
    with closing(connect(path, wait_s=WRITE_WAIT_S)) as conn, transaction(conn):
        conn.execute("DELETE FROM review_queue WHERE queue = ?", [queue])
        # one INSERT from an Arrow table: executemany is a statement per row (minutes for
        # a 100,000-conversation queue)
        conn.register("drawn_rows", _drawn_table(drawn))
        try:
            conn.execute(
                "INSERT INTO review_queue (queue, conversation_id, position, stratum, "
                "created_at, strategy, reviewer, reason) SELECT ?, conversation_id, "
                "position, stratum, CAST(? AS TIMESTAMPTZ), ?, ?, reason FROM drawn_rows",
                [queue, now, strategy, reviewer],
            )
        finally:
            conn.unregister("drawn_rows")
    by_id = {candidate.conversation_id: candidate for candidate in candidates}
    counts: dict[str, int] = {}
    for item in drawn:
        for key in _keys(by_id[item.conversation_id], tuple(stratify)):
            counts[key] = counts.get(key, 0) + 1
    return SampleSummary(queue, strategy, len(drawn), len(candidates), counts)


def draw(candidates: Sequence[Candidate], n: int, stratify: tuple[str, ...]) -> list[Drawn]:
    """Up to `n` candidates, each stratum holding its share of the candidates' (a conversation
    in several strata counts for each): the stratum furthest below its share gives the next,
    of its best ranked few the one that overfills its other strata least. Without strata, the
    `n` best ranked."""
    ordered = sorted(candidates, key=lambda candidate: candidate.rank)
    pools: dict[str, list[Candidate]] = {}
    for candidate in ordered:
        for key in _keys(candidate, stratify):
            pools.setdefault(key, []).append(candidate)
    total = len(ordered)
    n = min(n, total)
    target = {key: n * len(pool) / total for key, pool in pools.items()}
    held = dict.fromkeys(pools, 0)
    cursor = dict.fromkeys(pools, 0)
    taken: set[str] = set()
    drawn: list[Drawn] = []
    while len(drawn) < n:
        open_keys = [key for key in pools if cursor[key] < len(pools[key])]
        key = max(open_keys, key=lambda k: (target[k] - held[k], -cursor[k], k))
        pool = pools[key]
        while cursor[key] < len(pool) and pool[cursor[key]].conversation_id in taken:
            cursor[key] += 1
        if cursor[key] == len(pool):
            continue
        # Of the next few, the one whose other strata it also fills overshoot least.
        ahead = [
            c for c in pool[cursor[key] : cursor[key] + LOOKAHEAD] if c.conversation_id not in taken
        ]
        candidate = min(
            ahead,
            key=lambda c: sum(max(0.0, held[k] + 1 - target[k]) for k in _keys(c, stratify)),
        )
        taken.add(candidate.conversation_id)
        for carried in _keys(candidate, stratify):
            held[carried] += 1
        drawn.append(Drawn(candidate.conversation_id, key, candidate.reason))
    return drawn


def _drawn_table(drawn: Sequence[Drawn]) -> pa.Table:
    return pa.table(
        {
            "conversation_id": pa.array([item.conversation_id for item in drawn], pa.string()),
            "position": pa.array(range(len(drawn)), pa.int32()),
            "stratum": pa.array([item.stratum for item in drawn], pa.string()),
            "reason": pa.array([item.reason for item in drawn], pa.string()),
        }
    )


def _keys(candidate: Candidate, stratify: tuple[str, ...]) -> list[str]:
    """The strata a candidate is in: one per combination of its values."""
    if not stratify:
        return ["all"]
    values = [candidate.labels[name] or ["(none)"] for name in stratify]
    return [" · ".join(combination) for combination in product(*values)]


_BASE = """
    SELECT o.conversation_id, o.status, o.topic_categories, o.flaw_names,
           json_extract_string(s.topics, '$[0].category') AS primary_topic, j.passed,
           j.mean_score
    FROM conversation_overview o
    JOIN conversations c USING (conversation_id) JOIN scenarios s USING (scenario_id)
    LEFT JOIN conversation_judgement j USING (conversation_id)
    WHERE o.status = 'complete'
"""

# Per conversation judged by two judges or more: do they part on pass/fail, on the failed gates,
# and on which criteria (a criterion where their answers are not all the same).
_DISAGREEMENT = """
    WITH parted_criteria AS (
        SELECT conversation_id, criterion_id
        FROM verdicts GROUP BY conversation_id, criterion_id
        HAVING count(DISTINCT answer) > 1
    ), criteria AS (
        SELECT conversation_id, list(criterion_id) AS criteria
        FROM parted_criteria GROUP BY conversation_id
    ), judged AS (
        SELECT conversation_id, count(*) AS judges,
               count(DISTINCT passed) > 1 AS pass_parted,
               count(DISTINCT list_sort(failed_gates)) > 1 AS gates_parted,
               list(judge_id || ': ' || CASE WHEN passed THEN 'passed' ELSE 'failed' END
                    ORDER BY judge_id) AS said
        FROM assessments GROUP BY conversation_id
    )
    SELECT conversation_id, pass_parted, gates_parted, said,
           coalesce(list_sort(criteria), []) AS criteria
    FROM judged LEFT JOIN criteria USING (conversation_id)
    WHERE judges > 1
"""

_BORDERLINE = """
    SELECT j.conversation_id, j.mean_score, max(a.pass_threshold) AS threshold
    FROM conversation_judgement j JOIN assessments a USING (conversation_id)
    WHERE j.mean_score IS NOT NULL GROUP BY ALL
"""


def _candidates(
    conn: duckdb.DuckDBPyConnection, path: Path, strategy: str, rng: random.Random
) -> list[Candidate]:
    rows = conn.execute(_BASE + " ORDER BY o.conversation_id").fetchall()
    if not rows:
        raise StoreError(f"{path}: no complete conversation to review")
    labels = {
        cid: {
            "topic": list(topics or []),
            "primary-topic": [primary] if primary else [],
            "flaw": list(flaws or []),
            "status": [status],
            "passed": [{True: "passed", False: "failed", None: "unjudged"}[passed]],
        }
        for cid, status, topics, flaws, primary, passed, _ in rows
    }
    if strategy == "random":
        return [
            Candidate(cid, values, (rng.random(),), "random draw") for cid, values in labels.items()
        ]
    if strategy == "disagreement":
        return _disagreement(conn, path, labels, rng)
    return _borderline(conn, path, labels, rng)


def _disagreement(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    labels: Mapping[str, dict[str, list[str]]],
    rng: random.Random,
) -> list[Candidate]:
    found = conn.execute(_DISAGREEMENT + " ORDER BY conversation_id").fetchall()
    candidates = []
    for cid, pass_parted, gates_parted, said, criteria in found:
        if cid not in labels or not (pass_parted or gates_parted or criteria):
            continue
        parts = []
        if pass_parted:
            parts.append(f"judges disagree on pass ({', '.join(said)})")
        if gates_parted:
            parts.append("judges disagree on the failed gates")
        if criteria:
            named = ", ".join(criteria[:MAX_REASON_CRITERIA])
            more = len(criteria) - MAX_REASON_CRITERIA
            parts.append(
                f"{len(criteria)} criteria answered differently ({named}"
                f"{f', {more} more' if more > 0 else ''})"
            )
        rank = (-float(bool(pass_parted or gates_parted)), -float(len(criteria)), rng.random())
        candidates.append(Candidate(cid, labels[cid], rank, "; ".join(parts)))
    if not candidates:
        raise StoreError(
            f"{path}: no two judges disagree on any complete conversation "
            "(--strategy disagreement needs conversations judged by two judges or more)"
        )
    return candidates


def _borderline(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    labels: Mapping[str, dict[str, list[str]]],
    rng: random.Random,
) -> list[Candidate]:
    found = conn.execute(_BORDERLINE + " ORDER BY conversation_id").fetchall()
    candidates = []
    for cid, score, threshold in found:
        if cid not in labels:
            continue
        side = "above" if score >= threshold else "below"
        gap = abs(score - threshold)
        reason = f"score {score:.3f}, {gap:.3f} {side} the pass threshold {threshold:g}"
        rank = (abs(score - threshold), rng.random())
        candidates.append(Candidate(cid, labels[cid], rank, reason))
    if not candidates:
        raise StoreError(
            f"{path}: no judged complete conversation (--strategy borderline needs scores: "
            "run rapport judge first)"
        )
    return candidates


# ---- reading queues ---------------------------------------------------------------------------


class QueueSummary(msgspec.Struct, frozen=True):
    name: str
    strategy: str
    reviewer: str | None  # whom it is assigned to
    size: int
    reviewed: int  # conversations reviewed by the assigned reviewer (by anyone if unassigned)


class QueueItem(msgspec.Struct, frozen=True):
    position: int
    conversation_id: str
    stratum: str | None
    reason: str
    reviewers: list[str]  # who reviewed it already


class QueuePlace(msgspec.Struct, frozen=True):
    """Where a conversation stands in a queue, for its page's progress line."""

    queue: str
    strategy: str
    reason: str
    position: int  # 1-based
    size: int
    reviewed_by_you: int


def queues(conn: duckdb.DuckDBPyConnection) -> list[QueueSummary]:
    """Every queue in the file with its own progress."""
    return [
        QueueSummary(*row)
        for row in conn.execute(
            "SELECT q.queue, any_value(q.strategy), any_value(q.reviewer), "
            "count(DISTINCT q.conversation_id), "
            "count(DISTINCT h.conversation_id) FILTER (WHERE q.reviewer IS NULL "
            "OR h.reviewer = q.reviewer) "
            "FROM review_queue q LEFT JOIN human_verdicts h "
            "ON h.conversation_id = q.conversation_id AND h.criterion_id = 'overall' "
            "GROUP BY q.queue ORDER BY q.queue"
        ).fetchall()
    ]


def queue_items(conn: duckdb.DuckDBPyConnection, name: str) -> list[QueueItem]:
    """One queue in order, with who reviewed each conversation."""
    return [
        QueueItem(position, cid, stratum, reason, list(reviewers or []))
        for position, cid, stratum, reason, reviewers in conn.execute(
            "SELECT q.position, q.conversation_id, q.stratum, q.reason, "
            "list(DISTINCT h.reviewer ORDER BY h.reviewer) FILTER (WHERE h.reviewer IS NOT NULL) "
            "FROM review_queue q LEFT JOIN human_verdicts h "
            "ON h.conversation_id = q.conversation_id AND h.criterion_id = 'overall' "
            "WHERE q.queue = ? GROUP BY ALL ORDER BY q.position",
            [name],
        ).fetchall()
    ]


def first_queue(conn: duckdb.DuckDBPyConnection) -> str | None:
    """`default` when there is one, else the first by name."""
    found = conn.execute(
        "SELECT queue FROM review_queue GROUP BY queue ORDER BY queue <> ?, queue LIMIT 1",
        [DEFAULT_QUEUE],
    ).fetchone()
    return found[0] if found else None


def next_in_queue(
    conn: duckdb.DuckDBPyConnection, name: str, reviewer: str, after: str | None = None
) -> str | None:
    """The first conversation of queue `name` that `reviewer` has not reviewed, looking after
    `after` first and then from the start; None when the reviewer has done them all."""
    items = queue_items(conn, name)
    start = 0
    if after is not None:
        start = next((i + 1 for i, item in enumerate(items) if item.conversation_id == after), 0)
    for item in items[start:] + items[:start]:
        if reviewer not in item.reviewers:
            return item.conversation_id
    return None


def place(
    conn: duckdb.DuckDBPyConnection, conversation_id: str, name: str | None, reviewer: str | None
) -> QueuePlace | None:
    """Where `conversation_id` stands in queue `name` (or the first queue holding it)."""
    found = conn.execute(
        "SELECT queue, strategy, reason, position FROM review_queue "
        "WHERE conversation_id = ? AND (? IS NULL OR queue = ?) "
        "ORDER BY queue <> ?, queue LIMIT 1",
        [conversation_id, name, name, DEFAULT_QUEUE],
    ).fetchone()
    if found is None:
        return None
    queue, strategy, reason, position = found
    size, done = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE conversation_id IN (SELECT conversation_id "
        "FROM human_verdicts WHERE reviewer = ? AND criterion_id = 'overall')) "
        "FROM review_queue WHERE queue = ?",
        [reviewer or "", queue],
    ).fetchone()
    rank = conn.execute(
        "SELECT count(*) FROM review_queue WHERE queue = ? AND position <= ?", [queue, position]
    ).fetchone()[0]
    return QueuePlace(queue, strategy, reason, rank, size, done)


def memberships(conn: duckdb.DuckDBPyConnection, conversation_id: str) -> list[tuple[str, str]]:
    """The queues holding a conversation, each with the reason it is there."""
    return conn.execute(
        "SELECT queue, reason FROM review_queue WHERE conversation_id = ? ORDER BY queue",
        [conversation_id],
    ).fetchall()


class QueueDone(msgspec.Struct, frozen=True):
    """What a reviewer did in a queue, for the queue-finished page."""

    queue: str
    strategy: str
    size: int
    reviewed: int
    passes: int
    fails: int
    agreed_with_judges: int  # of the reviewed conversations the judges scored
    compared: int


def queue_done(conn: duckdb.DuckDBPyConnection, name: str, reviewer: str) -> QueueDone | None:
    found = conn.execute(
        "SELECT any_value(q.strategy), count(*), count(h.answer), "
        "count(*) FILTER (WHERE h.answer = 'YES'), count(*) FILTER (WHERE h.answer = 'NO'), "
        "count(*) FILTER (WHERE h.answer = CASE WHEN j.passed THEN 'YES' ELSE 'NO' END), "
        "count(*) FILTER (WHERE h.answer IS NOT NULL AND j.passed IS NOT NULL) "
        "FROM review_queue q LEFT JOIN human_verdicts h ON h.conversation_id = q.conversation_id "
        "AND h.reviewer = ? AND h.criterion_id = ? "
        "LEFT JOIN conversation_judgement j ON j.conversation_id = q.conversation_id "
        "WHERE q.queue = ?",
        [reviewer, OVERALL, name],
    ).fetchone()
    if found is None or not found[1]:
        return None
    return QueueDone(name, *found)


class StrategyAgreement(msgspec.Struct, frozen=True):
    """People vs the judges' pass rule on the conversations queued by one strategy."""

    strategy: str
    conversations: int
    reviews: int
    agreement: float | None
    kappa: float | None


def strategy_agreement(conn: duckdb.DuckDBPyConnection) -> list[StrategyAgreement]:
    """Per strategy, every reviewer's pass/fail beside the pass rule's on the conversations
    its queues hold (Cohen's κ over those pairs; None where chance explains all of it)."""
    reviews = conn.execute(
        "SELECT DISTINCT q.strategy, h.conversation_id, h.reviewer, h.answer "
        "FROM review_queue q JOIN human_verdicts h ON h.conversation_id = q.conversation_id "
        "AND h.criterion_id = ? ORDER BY ALL",
        [OVERALL],
    ).fetchall()
    if not reviews:
        return []
    # The pass rule of the reviewed conversations only, named as a list, while they are few:
    # the view aggregates every judged conversation otherwise (0.2 s over 100,000; 0.05 s)
    reviewed = sorted({cid for _, cid, _, _ in reviews})
    select = (
        "SELECT conversation_id, CASE WHEN passed THEN 'YES' ELSE 'NO' END "
        "FROM conversation_judgement"
    )
    if len(reviewed) <= MAX_NAMED_REVIEWED:
        found = conn.execute(select + " WHERE list_contains(?, conversation_id)", [reviewed])
    else:
        found = conn.execute(select)
    rule = dict(found.fetchall())
    rows = [
        (strategy, cid, answer, rule[cid]) for strategy, cid, _, answer in reviews if cid in rule
    ]
    if not rows:
        return []
    # κ and agreement by the views' own macros (store/views.sql): written once
    columns = zip(*rows, strict=True)
    names = ("strategy", "conversation_id", "person", "judges")
    pairs = pa.table(dict(zip(names, columns, strict=True)))
    conn.register("strategy_pairs", pairs)
    try:
        found = conn.execute(
            "SELECT strategy, count(DISTINCT conversation_id), count(*), "
            "percent_agreement(person, judges), cohen_kappa(person, judges) "
            "FROM strategy_pairs GROUP BY strategy"
        ).fetchall()
    finally:
        conn.unregister("strategy_pairs")
    by_strategy = {row[0]: StrategyAgreement(*row) for row in found}
    return [by_strategy[strategy] for strategy in STRATEGIES if strategy in by_strategy]
