"""The review-first pages: one conversation with its transcript beside a compact rubric that stays
in view, the queues with their progress, and the page a finished queue ends on.

Blind review: a reviewer sees nothing of another reviewer's answers before saving their own (the
reviewer-vs-reviewer κ is only worth reading when each answered unswayed); after saving, the
others' answers are shown, each marked whose. Every value from the database goes through `esc`;
the keyboard lives in /static/review.js (the CSP forbids inline script).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote, urlencode

from rapport.store.review_queues import (
    QueueDone,
    QueueItem,
    QueuePlace,
    QueueSummary,
    StrategyAgreement,
)
from rapport.store.reviews import OVERALL
from rapport.store.viewer_reads import ConversationDetail, Criterion, HumanAnswer
from rapport.viewer.pages import _chat, _judging, _scenario, _user_judging, esc

SHORT_LABEL = 60  # characters of a criterion's question shown before it is expanded
ASSETS = (
    "<link rel='stylesheet' href='/static/review.css'>"
    "<script src='/static/review.js' defer></script>"
)
KEYS = (
    ("Y / N / A", "answer the focused criterion yes, no or n/a (then the next one is focused)"),
    ("↑ ↓ or J / K", "move between criteria"),
    ("P / F", "overall pass or fail"),
    ("S", "save"),
    ("Shift + S", "save and go to the next in the queue"),
    ("?", "show or hide these keys"),
)


def short_label(question: str) -> str:
    """The question's first sentence, cut at a word to fit one line of the rubric."""
    first = question.strip().split("? ", 1)[0].split(". ", 1)[0].rstrip("?.")
    if len(first) <= SHORT_LABEL:
        return first
    return first[:SHORT_LABEL].rsplit(" ", 1)[0] + "…"


def conversation_url(conversation_id: str, queue: str | None) -> str:
    suffix = f"?{urlencode({'queue': queue})}" if queue else ""
    return f"/c/{quote(conversation_id, safe='')}{suffix}"


def _progress(place: QueuePlace | None, queued_in: Sequence[tuple[str, str]]) -> str:
    parts = []
    if place is not None:
        parts.append(
            f"<p id='progress'><b>{place.position:,} of {place.size:,} in queue "
            f"<a href='/queue/{esc(quote(place.queue))}'>{esc(place.queue)}</a></b> · "
            f"{place.reviewed_by_you:,} reviewed by you · drawn by {esc(place.strategy)}</p>"
        )
    reasons = "".join(
        f"<li>in queue <b>{esc(name)}</b>: {esc(reason)}</li>" for name, reason in queued_in
    )
    if reasons:
        parts.append(f"<ul id='queued-because'>{reasons}</ul>")
    return "".join(parts)


def _criterion(criterion: Criterion) -> str:
    options = "".join(
        f"<label title='{label} (key {key})'><input type='radio' "
        f"name='c:{esc(criterion.id)}' value='{answer}'>{key}</label>"
        for answer, key, label in (("YES", "Y", "yes"), ("NO", "N", "no"), ("NA", "A", "n/a"))
    )
    gate = " <span class='gate'>gate</span>" if criterion.gate else ""
    return (
        f"<li class='criterion' data-criterion='{esc(criterion.id)}' tabindex='-1'>"
        f"<span class='options'>{options}</span><details><summary><b>{esc(criterion.id)}</b> "
        f"{esc(short_label(criterion.question))}{gate}</summary>"
        f"<p class='question'>{esc(criterion.question)}</p></details></li>"
    )


def _others(human: Sequence[HumanAnswer], reviewer: str | None) -> str:
    """Other reviewers' answers, each marked whose: shown only once `reviewer` saved theirs."""
    mine = reviewer is not None and any(answer.reviewer == reviewer for answer in human)
    others: dict[str, dict[str, str]] = {}
    notes: dict[str, str | None] = {}
    for answer in human:
        if answer.reviewer != reviewer:
            others.setdefault(answer.reviewer, {})[answer.criterion_id] = answer.answer
            notes[answer.reviewer] = answer.note
    if not mine:
        return (
            "<p id='blind'>Other reviewers' answers show here once you have saved yours "
            "(blind review: each reviewer answers unswayed).</p>"
        )
    if not others:
        return "<p id='blind'>Saved. Nobody else has reviewed this conversation yet.</p>"
    items = []
    for name, answers in sorted(others.items()):
        overall = {"YES": "pass", "NO": "fail"}.get(answers.get(OVERALL, ""), "no overall")
        criteria = ", ".join(f"{k} {v}" for k, v in sorted(answers.items()) if k != OVERALL)
        note = f" · note: {esc(notes[name])}" if notes[name] else ""
        items.append(
            f"<li class='other-review'><b>{esc(name)}</b>: {overall}"
            f"{' · ' + esc(criteria) if criteria else ''}{note}</li>"
        )
    return f"<h3>Other reviewers</h3><ul id='reviews'>{''.join(items)}</ul>"


def _form(
    detail: ConversationDetail, csrf: str, reviewer: str | None, place: QueuePlace | None
) -> str:
    own: dict[str, str] = {}
    note = ""
    for answer in detail.human:
        if answer.reviewer == reviewer:
            own[answer.criterion_id] = answer.answer
            note = answer.note or ""
    # Only this reviewer's own answers, for the script to fill the form in with (as data).
    earlier = esc(json.dumps({reviewer: own} if reviewer and own else {}))
    overall = "".join(
        f"<label><input type='radio' name='{OVERALL}' value='{value}'>{label} "
        f"<kbd>{key}</kbd></label>"
        for value, label, key in (("YES", "pass", "P"), ("NO", "fail", "F"))
    )
    queue_field = f"<input type='hidden' name='queue' value='{esc(place.queue)}'>" if place else ""
    next_label = "Save and next in queue" if place else "Save and next unreviewed"
    return (
        f"<form method='post' action='/c/{esc(detail.conversation_id)}/review' "
        f"id='review-form' data-earlier='{earlier}'>"
        f"<input type='hidden' name='csrf' value='{esc(csrf)}'>"
        f"<input type='hidden' name='reviewer' id='reviewer' value='{esc(reviewer or '')}'>"
        f"{queue_field}<ol class='rubric'>{''.join(map(_criterion, detail.criteria))}</ol>"
        f"<p class='overall'>Overall: {overall}</p>"
        f"<p><textarea name='note' rows='2' placeholder='Note (optional)'>{esc(note)}"
        "</textarea></p>"
        "<p id='form-error' class='error' role='alert' hidden></p>"
        "<p class='buttons'><button type='submit' name='then' value='stay'>Save <kbd>S</kbd>"
        f"</button> <button type='submit' name='then' value='next'>{next_label} "
        "<kbd>⇧S</kbd></button> <a href='#' id='show-keys'>keys <kbd>?</kbd></a></p></form>"
    )


def _keys_help() -> str:
    rows = "".join(f"<tr><td><kbd>{esc(k)}</kbd></td><td>{esc(v)}</td></tr>" for k, v in KEYS)
    return (
        f"<div id='keys-help' hidden><h3>Keyboard</h3><table>{rows}</table>"
        "<p>Keys act unless you are typing in the note.</p></div>"
    )


def conversation_body(
    detail: ConversationDetail,
    csrf: str,
    *,
    reviewer: str | None,
    place: QueuePlace | None,
    queued_in: Sequence[tuple[str, str]],
) -> str:
    """The review-first page: transcript on the left, the rubric kept in view on the right."""
    return (
        ASSETS
        + f"<h1>Conversation {esc(detail.conversation_id)}</h1>"
        + _progress(place, queued_in)
        + "<div class='review-columns'><div class='transcript-side'>"
        + _chat(detail)
        + _scenario(detail)
        + _judging(detail)
        + _user_judging(detail)
        + "</div><aside id='review' class='rubric-side'><h2>Your review</h2>"
        + _form(detail, csrf, reviewer, place)
        + _others(detail.human, reviewer)
        + _keys_help()
        + "</aside></div>"
    )


def queues_body(summaries: Sequence[QueueSummary], items: dict[str, list[QueueItem]]) -> str:
    if not summaries:
        return (
            ASSETS + "<h1>Review queues</h1><p>No queue yet: <code>rapport review sample --db "
            "PATH --n 50 [--strategy disagreement] [--queue NAME --reviewer NAME]</code></p>"
        )
    rows = "".join(
        f"<tr><td><a href='/queue/{esc(quote(s.name))}'>{esc(s.name)}</a></td>"
        f"<td>{esc(s.strategy)}</td><td>{esc(s.reviewer or 'anyone')}</td>"
        f"<td>{s.reviewed:,} of {s.size:,} reviewed</td>"
        f"<td><a class='next-in-queue' href='/queue/{esc(quote(s.name))}/next'>next →</a></td>"
        "</tr>"
        for s in summaries
    )
    sections = "".join(_queue_items(name, queued) for name, queued in items.items())
    return (
        ASSETS + "<h1>Review queues</h1><table id='queues'><thead><tr><th>queue</th>"
        "<th>drawn by</th><th>for</th><th>progress</th><th></th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{sections}"
    )


def _queue_items(name: str, queued: Sequence[QueueItem]) -> str:
    rows = "".join(
        f"<tr><td>{i + 1:,}</td><td><a href='{esc(conversation_url(item.conversation_id, name))}'>"
        f"{esc(item.conversation_id)}</a></td><td>{esc(item.stratum)}</td>"
        f"<td>{esc(item.reason)}</td><td>{esc(', '.join(item.reviewers)) or '—'}</td></tr>"
        for i, item in enumerate(queued)
    )
    return (
        f"<section><h2>Queue {esc(name)}</h2><table class='queue' id='queue-{esc(name)}'><thead>"
        "<tr><th>#</th><th>conversation</th><th>stratum</th><th>why it is queued</th>"
        f"<th>reviewed by</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def done_body(done: QueueDone, reviewer: str | None, left: int) -> str:
    """The page a queue ends on: what this reviewer did, and the agreement it moved."""
    who = esc(reviewer) if reviewer else "you"
    if left:
        head = (
            f"<h1>Queue {esc(done.queue)}: {left:,} left</h1><p><a id='next-in-queue' "
            f"href='/queue/{esc(quote(done.queue))}/next'>Next unreviewed →</a></p>"
        )
    else:
        head = f"<h1 id='queue-finished'>Queue {esc(done.queue)} finished</h1>"
    agreed = (
        f"<li>{who} agreed with the judges' pass rule on {done.agreed_with_judges:,} of "
        f"{done.compared:,} of them</li>"
        if done.compared
        else ""
    )
    return (
        ASSETS + head + "<ul id='queue-done'>"
        f"<li>{who} reviewed {done.reviewed:,} of the {done.size:,} conversations in it "
        f"(drawn by {esc(done.strategy)}): {done.passes:,} passed, {done.fails:,} failed</li>"
        f"{agreed}</ul><p><a id='agreement-link' href='/agreement'>See the judge-vs-people "
        "agreement these reviews moved →</a> · <a href='/queue'>all queues</a></p>"
    )


def strategy_section(rows: Sequence[StrategyAgreement]) -> str:
    """κ per strategy, with why a queue drawn for disagreement is no estimate of the corpus."""
    if not rows:
        return ""

    def figure(value: float | None, reason: str) -> str:
        return f"{value:.3f}" if value is not None else f"n/a — {reason}"

    body = "".join(
        f"<tr><td>{esc(row.strategy)}</td><td>{row.conversations:,}</td><td>{row.reviews:,}</td>"
        f"<td>{figure(row.agreement, 'no review')}</td>"
        f"<td>{figure(row.kappa, 'every answer the same: chance explains it all')}</td></tr>"
        for row in rows
    )
    return (
        "<section id='by-strategy'><h2>People vs the pass rule, by how the queue was drawn</h2>"
        "<table><thead><tr><th>strategy</th><th>conversations</th><th>reviews</th>"
        f"<th>agreement</th><th>κ</th></tr></thead><tbody>{body}</tbody></table>"
        "<p class='caveat'>A queue drawn by disagreement (or borderline) is not a random "
        "sample: it holds the conversations the judges find hardest, so its agreement and κ are "
        "lower than the corpus's by design. Only a random queue estimates them for the whole "
        "corpus.</p></section>"
    )
