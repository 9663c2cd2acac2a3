"""What `rapport view`'s overview shows, read as one Struct: the headline figures, the series
its charts draw and the tables below them.

The tables come from the same SQL as `rapport stats` (status_counts, by_topic, by_flaw,
backend_usage, pass_rate_by_*, ...); cost and cache share are summed from the cost table's rows
in Python; the pass rate and the score histogram read conversation_judgement alone, and the
exchanges chart reads one histogram from which its summary (min, median, 90th percentile, max,
mean) is taken too, so the page scans every message less often than the tables did.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import msgspec

from rapport.store.stats import JUDGING_SECTIONS, SECTIONS, SIMULATOR_SECTIONS
from rapport.store.viewer_reads import Table, _table

_SECTIONS = dict(SECTIONS)
_JUDGING = dict(JUDGING_SECTIONS)
_SIMULATOR = dict(SIMULATOR_SECTIONS)
COST_TITLE = "Cost and prompt cache by role (cache-read share of input tokens)"
GATEWAYS_TITLE = "Gateways (latest run of each)"
GATEWAY_TOKEN_COLUMNS = frozenset({"prompt_tokens", "completion_tokens", "cache_read"})
PERSONA_TITLE = "Pass rate by persona attribute"
SCORE_BINS = 20  # the score histogram's columns over [0, 1]
USER_TITLES = (
    "User side: pass rate (across judges, by the pass rule)",
    "User side: planned flaws shown (flaw realisation)",
)
EXCHANGES_SQL = """
SELECT exchanges, count(*) AS conversations, sum(num_messages)::BIGINT AS messages
FROM conversation_overview WHERE status = 'complete' GROUP BY exchanges ORDER BY exchanges
"""
# The pass rate straight from conversation_judgement (the view `pass_rate` reads it through
# judged_overview, which sums every message first; the set of conversations is the same).
JUDGED_SQL = """
SELECT count(*), count(*) FILTER (WHERE passed), round(avg(passed::INTEGER), 4),
       round(avg(mean_score), 4)
FROM conversation_judgement
"""
SCORES_SQL = """
SELECT least(floor(mean_score * $1), $2) / $1 AS score_from, count(*) AS conversations
FROM conversation_judgement GROUP BY 1 ORDER BY 1
"""
REVIEWED_SQL = """
SELECT count(DISTINCT conversation_id), count(DISTINCT reviewer),
       count(DISTINCT (conversation_id, reviewer))
FROM human_verdicts
WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)
"""


class Headline(msgspec.Struct, frozen=True):
    """The figures a person reads first. None: not known yet (nothing judged, no price)."""

    conversations: int
    complete: int
    judged: int
    passed: int | None
    pass_rate: float | None
    mean_score: float | None
    cost_usd: float | None
    unpriced_roles: list[str]  # roles with messages but no known price
    cache_read_share: float | None
    reviewed: int  # conversations someone reviewed
    reviewers: int
    reviews: int  # reviewer × conversation


class Slice(msgspec.Struct, frozen=True):
    """One topic category or flaw: its conversations and, once judged, its pass rate."""

    name: str
    conversations: int
    complete: int
    mean_exchanges: float | None
    judged: int
    pass_rate: float | None
    mean_score: float | None


class ExchangeCount(msgspec.Struct, frozen=True):
    exchanges: int
    conversations: int
    messages: int


class Overview(msgspec.Struct, frozen=True):
    headline: Headline
    statuses: list[tuple[str, int]]
    exchanges: list[ExchangeCount]  # complete conversations, by their number of exchanges
    topics: list[Slice]
    flaws: list[Slice]
    score_bins: list[tuple[float, int]]  # (from, conversations) by 1/SCORE_BINS, judged only
    thresholds: list[float]  # the judges' pass thresholds
    pass_rule: str
    tables: list[Table]  # shown as they are, below the charts


def _rows(table: Table) -> list[dict[str, Any]]:
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def _narrow(table: Table) -> Table:
    """The gateways' table without its token columns (the cost table has them), so that it
    fits a 900 px page."""
    keep = [i for i, name in enumerate(table.columns) if name not in GATEWAY_TOKEN_COLUMNS]
    return Table(
        table.title,
        [table.columns[i] for i in keep],
        [[row[i] for i in keep] for row in table.rows],
    )


def _slices(counts: Table, judged: Table | None, key: str) -> list[Slice]:
    """`by_topic`/`by_flaw` beside `pass_rate_by_*`, most conversations first."""
    rates = {row[key]: row for row in _rows(judged)} if judged else {}
    found = []
    for row in _rows(counts):
        rate = rates.get(row[key], {})
        found.append(
            Slice(
                name=str(row[key]),
                conversations=row["conversations"],
                complete=row["complete"],
                mean_exchanges=row["mean_exchanges"],
                judged=rate.get("conversations", 0),
                pass_rate=rate.get("pass_rate"),
                mean_score=rate.get("mean_score"),
            )
        )
    return found


def quantile(counts: list[ExchangeCount], q: float) -> int | None:
    """`quantile_disc` over the histogram: the value at position ceil(n·q) in sorted order."""
    total = sum(item.conversations for item in counts)
    if not total:
        return None
    wanted = max(1, math.ceil(total * q))
    seen = 0
    for item in counts:
        seen += item.conversations
        if seen >= wanted:
            return item.exchanges
    return counts[-1].exchanges


def overview(conn: duckdb.DuckDBPyConnection) -> Overview:
    statuses = [
        (str(status), int(count))
        for status, count in conn.execute(_SECTIONS["Conversations by status"]).fetchall()
    ]
    exchanges = [ExchangeCount(*row) for row in conn.execute(EXCHANGES_SQL).fetchall()]
    cost = _table(conn, COST_TITLE, _SECTIONS[COST_TITLE])
    tables = [cost, _narrow(_table(conn, GATEWAYS_TITLE, _SECTIONS[GATEWAYS_TITLE]))]
    by_topic = _table(conn, "topics", _SECTIONS["By topic category"])
    by_flaw = _table(conn, "flaws", _SECTIONS["By flaw"])
    judged, passed, pass_rate, mean_score = conn.execute(JUDGED_SQL).fetchone()
    topic_rates = flaw_rates = None
    score_bins: list[tuple[float, int]] = []
    thresholds: list[float] = []
    if judged:
        topic_rates = _table(conn, "topic rates", _JUDGING["Pass rate by topic"])
        flaw_rates = _table(conn, "flaw rates", _JUDGING["Pass rate by flaw"])
        score_bins = [
            (round(float(low), 2), int(count))
            for low, count in conn.execute(SCORES_SQL, [SCORE_BINS, SCORE_BINS - 1]).fetchall()
        ]
        thresholds = [
            float(value)
            for (value,) in conn.execute(
                "SELECT DISTINCT pass_threshold FROM assessments ORDER BY 1"
            ).fetchall()
        ]
        tables.append(_table(conn, PERSONA_TITLE, _JUDGING[PERSONA_TITLE]))
    (users,) = conn.execute("SELECT count(*) FROM simulator_conversation_judgement").fetchone()
    if users:
        tables += [_table(conn, title, _SIMULATOR[title]) for title in USER_TITLES]
    rule = conn.execute("SELECT value FROM meta WHERE key = 'pass_rule'").fetchone()
    reviewed, reviewers, reviews = conn.execute(REVIEWED_SQL).fetchone()
    roles = _rows(cost)
    known = [row["cost_usd"] for row in roles if row["cost_usd"] is not None]
    inputs = sum(row["input_tokens"] or 0 for row in roles)
    headline = Headline(
        conversations=sum(count for _, count in statuses),
        complete=dict(statuses).get("complete", 0),
        judged=judged,
        passed=passed,
        pass_rate=pass_rate,
        mean_score=mean_score,
        cost_usd=sum(known) if known else None,
        unpriced_roles=[row["role"] for row in roles if row["cost_usd"] is None],
        cache_read_share=(
            sum(row["cache_read"] or 0 for row in roles) / inputs if inputs else None
        ),
        reviewed=reviewed,
        reviewers=reviewers,
        reviews=reviews,
    )
    return Overview(
        headline=headline,
        statuses=statuses,
        exchanges=exchanges,
        topics=_slices(by_topic, topic_rates, "topic_category"),
        flaws=_slices(by_flaw, flaw_rates, "flaw"),
        score_bins=sorted(score_bins),
        thresholds=thresholds,
        pass_rule=rule[0] if rule else "all",
        tables=tables,
    )
