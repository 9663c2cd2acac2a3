"""What `rapport iterate` tells a domain author after each small batch: the pass rate, the
criteria that fail most (with the judges' words), the flaws and topics that fail most, the
phrases the assistant over-uses, and how each figure moved since the previous iteration."""

from __future__ import annotations

import duckdb
import msgspec

from rapport.judges.repetition import repetition_report
from rapport.store.iterations import (
    plan_criterion_failures,
    plan_failure_quotes,
    plan_pass_rate,
    plan_pass_rates_by,
    plan_status_counts,
    plan_transcripts,
)

QUOTE_CHARS = 160
SHOWN = 5  # criteria, flaws, topics and phrases listed


class Quote(msgspec.Struct, frozen=True):
    conversation_id: str
    text: str


class CriterionFailure(msgspec.Struct, frozen=True):
    criterion_id: str
    no_rate: float
    answered: int
    quotes: list[Quote]


class GroupRate(msgspec.Struct, frozen=True):
    name: str
    conversations: int
    pass_rate: float


class Phrase(msgspec.Struct, frozen=True):
    ngram: str
    share: float  # of conversations


class IterationFigures(msgspec.Struct, frozen=True):
    planned: int
    complete: int
    failed: int
    judged: int
    pass_rate: float | None
    mean_score: float | None
    criteria: list[CriterionFailure]  # every criterion, most failed first
    flaws: list[GroupRate]  # worst first
    topics: list[GroupRate]
    overused: list[Phrase]  # the assistant's most over-used phrases
    distinct_2: float | None  # assistant distinct bigrams


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def iteration_figures(conn: duckdb.DuckDBPyConnection, plan_id: str) -> IterationFigures:
    statuses = plan_status_counts(conn, plan_id)
    judged, pass_rate, mean_score = plan_pass_rate(conn, plan_id)
    quotes = plan_failure_quotes(conn, plan_id)
    criteria = sorted(
        (
            CriterionFailure(
                criterion_id=cid,
                no_rate=no / answered if answered else 0.0,
                answered=answered,
                quotes=[Quote(c, _short(text)) for c, text in quotes.get(cid, [])],
            )
            for cid, no, answered in plan_criterion_failures(conn, plan_id)
        ),
        key=lambda c: (-c.no_rate, c.criterion_id),
    )
    transcripts = plan_transcripts(conn, plan_id)
    repetition = repetition_report(transcripts) if transcripts else None
    overused = (
        [Phrase(u.ngram, u.share) for u in repetition.overused.get("assistant", [])[:SHOWN]]
        if repetition
        else []
    )
    return IterationFigures(
        planned=sum(statuses.values()),
        complete=statuses.get("complete", 0),
        failed=statuses.get("failed", 0),
        judged=judged,
        pass_rate=pass_rate,
        mean_score=mean_score,
        criteria=criteria,
        flaws=[GroupRate(*row) for row in plan_pass_rates_by(conn, plan_id, "flaw_names")],
        topics=[GroupRate(*row) for row in plan_pass_rates_by(conn, plan_id, "topic_categories")],
        overused=overused,
        distinct_2=repetition.distinct.get("distinct_2") if repetition else None,
    )


def _change(now: float | None, before: float | None, percent: bool = True) -> str:
    if now is None:
        return "—"
    shown = f"{now:.0%}" if percent else f"{now:.3f}"
    if before is None:
        return shown
    delta = now - before
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else "="
    moved = f"{delta * 100:+.0f} pts" if percent else f"{delta:+.3f}"
    return f"{shown} ({arrow} {moved})"


def render_iteration(
    domain: str, number: int, now: IterationFigures, before: IterationFigures | None
) -> list[str]:
    """The report as lines of text, each figure with its change since `before`."""
    lines = [
        f"{domain} · iteration {number}"
        + (f" (compared with iteration {number - 1})" if before else " (first iteration)"),
        f"conversations: {now.complete}/{now.planned} complete, {now.failed} failed, "
        f"{now.judged} judged",
        f"pass rate: {_change(now.pass_rate, before.pass_rate if before else None)} · "
        f"mean score: {_change(now.mean_score, before.mean_score if before else None, False)}",
        "",
        "criteria failing most (NO share of YES/NO verdicts):",
    ]
    old_criteria = {c.criterion_id: c.no_rate for c in before.criteria} if before else {}
    for criterion in [c for c in now.criteria if c.no_rate > 0][:SHOWN]:
        change = _change(criterion.no_rate, old_criteria.get(criterion.criterion_id))
        lines.append(f"  {criterion.criterion_id}: {change} of {criterion.answered}")
        lines += [f'    "{q.text}" ({q.conversation_id})' for q in criterion.quotes]
    for title, groups, old in (
        ("flaws", now.flaws, before.flaws if before else []),
        ("topics", now.topics, before.topics if before else []),
    ):
        previous = {g.name: g.pass_rate for g in old}
        lines += ["", f"{title} failing most (pass rate):"]
        lines += [
            f"  {g.name}: {_change(g.pass_rate, previous.get(g.name))} of {g.conversations}"
            for g in groups[:SHOWN]
        ]
    old_phrases = {p.ngram: p.share for p in before.overused} if before else {}
    lines += [
        "",
        "assistant phrases over-used (share of conversations), distinct-2 "
        + _change(now.distinct_2, before.distinct_2 if before else None, False)
        + ":",
    ]
    lines += [f'  "{p.ngram}": {_change(p.share, old_phrases.get(p.ngram))}' for p in now.overused]
    return lines
