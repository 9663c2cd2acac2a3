"""The overview as a person reads it: the headline figures first, then the charts (pass rate by
topic and by flaw, the score histogram with the pass threshold marked, exchanges per
conversation), then the tables, every figure with its separators, shares as percentages."""

from __future__ import annotations

from itertools import pairwise
from urllib.parse import urlencode

from rapport.store.overview_reads import SCORE_BINS, Headline, Overview, Slice, quantile
from rapport.store.viewer_reads import Table
from rapport.viewer import charts, labels
from rapport.viewer.pages import esc, table


def _figure(ident: str, value: str, label: str, note: str = "") -> str:
    small = f"<span class='note'>{esc(note)}</span>" if note else ""
    return (
        f"<div class='figure' id='figure-{ident}'><b class='value'>{esc(value)}</b>"
        f"<span class='label'>{esc(label)}</span>{small}</div>"
    )


def _cost_note(headline: Headline) -> str:
    if headline.cost_usd is None:
        return "no message has a known price" if headline.conversations else ""
    if headline.unpriced_roles:
        return f"without {', '.join(headline.unpriced_roles)}: no price known"
    return ""


def headline_figures(headline: Headline) -> str:
    h = headline
    complete = h.complete / h.conversations if h.conversations else None
    rate = labels.percent(h.pass_rate) if h.pass_rate is not None else "—"
    rate_note = (
        "nothing judged yet" if h.passed is None else f"{h.passed:,} of {h.judged:,} judged pass"
    )
    reviewed_note = (
        f"{h.reviews:,} reviews by {h.reviewers:,} {'person' if h.reviewers == 1 else 'people'}"
        if h.reviews
        else "nobody yet"
    )
    share = labels.percent(h.cache_read_share) if h.cache_read_share is not None else "—"
    figures = [
        _figure("conversations", labels.whole(h.conversations), "conversations"),
        _figure(
            "complete", labels.whole(h.complete), "complete",
            f"{labels.percent(complete)} of all" if complete is not None else "",
        ),
        _figure("pass-rate", rate, "pass rate", rate_note),
        _figure("cost", labels.money(h.cost_usd) if h.cost_usd is not None else "—", "cost",
                _cost_note(h)),
        _figure("cache-share", share, "cache share", "of input tokens read from the cache"),
        _figure("judged", labels.whole(h.judged), "judged"),
        _figure("reviewed", labels.whole(h.reviewed), "reviewed by people", reviewed_note),
    ]  # fmt: skip
    return f"<section id='headline' class='figures'>{''.join(figures)}</section>"


def _rate_bars(title: str, slices: list[Slice], parameter: str) -> str:
    judged = sorted((s for s in slices if s.pass_rate is not None), key=lambda s: s.pass_rate)
    rows = [
        charts.Bar(
            label=labels.words(s.name),
            share=s.pass_rate or 0.0,
            text=f"{labels.percent(s.pass_rate)} of {s.judged:,}",
            href=f"/conversations?{urlencode({parameter: s.name, 'passed': 'no'})}"
            if s.name != "(none)"
            else None,
        )
        for s in judged
    ]
    return charts.bars(title, rows)


def _score_chart(overview: Overview) -> str:
    counts = dict(overview.score_bins)
    edges = [round(i / SCORE_BINS, 2) for i in range(SCORE_BINS + 1)]
    bins = [charts.Bin(low, high, counts.get(low, 0)) for low, high in pairwise(edges)]
    marks = [charts.Mark(t, f"pass threshold {t:g}") for t in overview.thresholds]
    rule = {"all": "every judge passes", "majority": "most judges pass",
            "mean": "the mean score reaches the threshold, no gate failed"}  # fmt: skip
    caption = (
        f"Mean score across judges; pass rule: {rule.get(overview.pass_rule, overview.pass_rule)}."
    )
    return charts.histogram("Score histogram (judged conversations)", bins, marks, caption=caption)


def _exchanges_chart(overview: Overview) -> str:
    counts = overview.exchanges
    if not counts:
        return charts.histogram("Exchanges per conversation (complete)", [])
    low, high = counts[0].exchanges, counts[-1].exchanges
    width = max(1, -(-(high - low + 1) // 30))  # at most 30 columns
    bins: dict[int, int] = {}
    for item in counts:
        start = low + (item.exchanges - low) // width * width
        bins[start] = bins.get(start, 0) + item.conversations
    columns = [
        charts.Bin(start, start + width, bins.get(start, 0))
        for start in range(low, high + 1, width)
    ]
    total = sum(item.conversations for item in counts)
    mean = sum(item.exchanges * item.conversations for item in counts) / total
    caption = (
        f"{total:,} complete: min {low}, median {quantile(counts, 0.5)}, "
        f"90th percentile {quantile(counts, 0.9)}, max {high}, mean {mean:.1f}; "
        f"{sum(item.messages for item in counts):,} messages."
    )
    return charts.histogram(
        "Exchanges per conversation (complete)", columns, whole=True, caption=caption
    )


def _slice_table(title: str, slices: list[Slice], key: str) -> str:
    columns = [key, "conversations", "complete", "mean_exchanges", "judged", "pass_rate",
               "mean_score"]  # fmt: skip
    rows = [
        [s.name, s.conversations, s.complete, s.mean_exchanges, s.judged, s.pass_rate,
         s.mean_score]
        for s in slices
    ]  # fmt: skip
    return table(Table(title, columns, rows))


def body(path: str, overview: Overview) -> str:
    statuses = Table("Conversations by status", ["status", "conversations"],
                     [[status, count] for status, count in overview.statuses])  # fmt: skip
    judged = overview.headline.judged > 0
    chart_parts = []
    if judged:
        chart_parts += [
            _rate_bars("Pass rate by topic", overview.topics, "topic"),
            _rate_bars("Pass rate by flaw", overview.flaws, "flaw"),
            _score_chart(overview),
        ]
    chart_parts.append(_exchanges_chart(overview))
    return (
        f"<h1>Overview of {esc(path)}</h1>"
        + headline_figures(overview.headline)
        + f"<section id='charts' class='charts'>{''.join(chart_parts)}</section>"
        + table(statuses)
        + _slice_table("By topic category", overview.topics, "topic_category")
        + _slice_table("By flaw", overview.flaws, "flaw")
        + "".join(table(section) for section in overview.tables)
    )
