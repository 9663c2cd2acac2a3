"""Judge vs people as people read it: per criterion, one confusion matrix per judge (a person's
answer down, the judge's across; 2×2 for pass/fail, 3×3 with NA for a criterion), each cell a
link to the conversations in it; κ written out, or "n/a — why"; conversations and reviews
counted apart."""

from __future__ import annotations

from itertools import groupby
from urllib.parse import urlencode

from rapport.store.agreement_reads import PASS_RULE_JUDGE, Agreement, Matrix, ReviewerPair
from rapport.store.reviews import OVERALL
from rapport.viewer import labels
from rapport.viewer.pages import esc

ANSWER_WORDS = {"YES": "yes", "NO": "no", "NA": "n/a"}
OVERALL_WORDS = {"YES": "pass", "NO": "fail"}


def cell_href(criterion: str, judge: str, person: str, said: str) -> str:
    """The conversations list holding exactly one cell's conversations."""
    query = {"criterion": criterion, "answered_by": judge, "person": person, "judge_answer": said}
    return f"/conversations?{urlencode(query)}"


def kappa_text(kappa: float | None, blank: str | None) -> str:
    if blank is None and kappa is not None:
        return f"{kappa:.2f}"
    return f"<span class='kappa-na'>n/a — {esc(blank)}</span>"


def _many(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _judge(judge: str) -> str:
    return f"{judge}, the judges together" if judge == PASS_RULE_JUDGE else f"judge {judge}"


def _count(conversations: int, reviews: int) -> str:
    text = f"{conversations:,}"
    if reviews != conversations:
        text += f"<small> ({reviews:,} reviews)</small>"
    return text


def matrix(found: Matrix) -> str:
    words = OVERALL_WORDS if found.criterion_id == OVERALL else ANSWER_WORDS
    head = "".join(f"<th scope='col'>{esc(words[a])}</th>" for a in found.answers)
    rows = []
    for person in found.answers:
        cells = []
        for said in found.answers:
            cell = found.cell(person, said)
            agree = " agree" if person == said else ""
            if cell.conversations:
                href = cell_href(found.criterion_id, found.judge_id, person, said)
                text = (
                    f"<a href='{esc(href)}' data-conversations='{cell.conversations}'>"
                    f"{_count(cell.conversations, cell.reviews)}</a>"
                )
            else:
                text = "0"
            cells.append(f"<td class='cell{agree}'>{text}</td>")
        rows.append(f"<tr><th scope='row'>{esc(words[person])}</th>{''.join(cells)}</tr>")
    caption = (
        f"{esc(_judge(found.judge_id))}: agreement {labels.percent(found.percent_agreement)}, "
        f"κ {kappa_text(found.kappa, found.kappa_blank)}<br><small>"
        f"{_many(found.conversations, 'conversation', 'conversations')}, "
        f"{_many(found.reviews, 'review', 'reviews')} by "
        f"{_many(found.reviewers, 'person', 'people')}</small>"
    )
    return (
        f"<table class='confusion' data-criterion='{esc(found.criterion_id)}' "
        f"data-judge='{esc(found.judge_id)}'><caption>{caption}</caption>"
        f"<thead><tr><th>person ↓ judge →</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _reviewer_table(pairs: list[ReviewerPair]) -> str:
    if not pairs:
        return (
            "<section id='reviewers'><h2>Reviewers with each other</h2><p>No conversation "
            "has two reviewers yet.</p></section>"
        )
    rows = "".join(
        f"<tr><td>{esc(p.criterion_id)}</td><td>{esc(p.reviewer_a)}</td>"
        f"<td>{esc(p.reviewer_b)}</td><td>{p.conversations:,}</td>"
        f"<td>{labels.percent(p.percent_agreement)}</td>"
        f"<td>{kappa_text(p.kappa, p.kappa_blank)}</td></tr>"
        for p in pairs
    )
    return (
        "<section id='reviewers'><h2>Reviewers with each other</h2><table><thead><tr>"
        "<th>criterion</th><th>reviewer</th><th>other reviewer</th>"
        "<th>conversations both reviewed</th><th>agreement</th><th>Cohen's κ</th></tr>"
        f"</thead><tbody>{rows}</tbody></table></section>"
    )


def body(found: Agreement) -> str:
    if not found.reviews:
        return (
            "<h1>Judge vs people</h1><p>Nobody has reviewed a conversation yet: open one from "
            "<a href='/queue'>the review queue</a> or <a href='/conversations'>the list</a> "
            "and answer its rubric.</p>"
        )
    summary = (
        f"<p id='reviewed'>{_many(found.conversations, 'conversation', 'conversations')} "
        f"reviewed by {_many(found.reviewers, 'person', 'people')}: "
        f"{_many(found.reviews, 'review', 'reviews')} "
        "(a review is one person's answers to one conversation). "
        "Rows: what the person said; columns: what the judge said; a cell counts conversations "
        "(and reviews, where two people reviewed one); click it for those conversations.</p>"
    )
    sections = []
    for criterion, group in groupby(found.matrices, key=lambda m: m.criterion_id):
        title = "Overall: pass or fail" if criterion == OVERALL else criterion
        question = found.questions.get(criterion, "")
        asked = f"<p class='question'>{esc(question)}</p>" if question else ""
        sections.append(
            f"<section class='criterion' id='criterion-{esc(criterion)}'><h2>{esc(title)}</h2>"
            f"{asked}<div class='matrices'>{''.join(matrix(m) for m in group)}</div></section>"
        )
    return (
        "<h1>Judge vs people</h1>"
        + summary
        + "".join(sections)
        + _reviewer_table(found.reviewer_pairs)
    )
