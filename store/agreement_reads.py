"""What the judge-vs-people page shows, read as Structs: per criterion and judge, the confusion
matrix of a person's answer against the judge's (each cell counting conversations and reviews
apart), with the agreement and Cohen's κ of `human_judge_agreement`; between reviewers, the
figures of `reviewer_agreement`. κ is read from those views, never computed here; where a view
leaves it blank, the matrix says why (one answer only, or every answer the same)."""

from __future__ import annotations

import duckdb
import msgspec

from rapport.store.reviews import OVERALL

ANSWERS = ("YES", "NO", "NA")
OVERALL_ANSWERS = ("YES", "NO")  # pass / fail
PASS_RULE_JUDGE = "(pass rule)"

# One query for every cell and every matrix's total: a conversation two reviewers answered
# differently sits in two cells, so a matrix's conversations are counted, not summed.
CELLS_SQL = """
SELECT criterion_id, judge_id, human_answer, judge_answer, count(*) AS reviews,
       count(DISTINCT conversation_id) AS conversations,
       grouping(human_answer, judge_answer) = 0 AS is_cell
FROM human_judge_pairs
GROUP BY GROUPING SETS ((criterion_id, judge_id, human_answer, judge_answer),
                        (criterion_id, judge_id))
"""
REVIEWED_SQL = """
SELECT count(DISTINCT conversation_id), count(DISTINCT reviewer),
       count(DISTINCT (conversation_id, reviewer))
FROM human_verdicts
"""


class Cell(msgspec.Struct, frozen=True):
    person: str
    judge: str
    conversations: int
    reviews: int  # reviewer × conversation


class Matrix(msgspec.Struct, frozen=True):
    """A person's answers (rows) against one judge's (columns) on one criterion."""

    criterion_id: str
    judge_id: str
    answers: list[str]  # the rows' and columns' order
    cells: list[Cell]  # the non-empty ones
    conversations: int
    reviews: int
    reviewers: int
    percent_agreement: float | None
    kappa: float | None
    kappa_blank: str | None  # why κ is blank, when it is

    def cell(self, person: str, judge: str) -> Cell:
        found = [c for c in self.cells if c.person == person and c.judge == judge]
        return found[0] if found else Cell(person, judge, 0, 0)


class ReviewerPair(msgspec.Struct, frozen=True):
    criterion_id: str
    reviewer_a: str
    reviewer_b: str
    conversations: int  # both answered
    percent_agreement: float | None
    kappa: float | None
    kappa_blank: str | None


class Agreement(msgspec.Struct, frozen=True):
    conversations: int  # reviewed by someone
    reviewers: int
    reviews: int  # reviewer × conversation
    questions: dict[str, str]  # criterion → its question
    matrices: list[Matrix]  # `overall` first, then by criterion; the pass rule first
    reviewer_pairs: list[ReviewerPair]


def blank_kappa(items: int, labels: set[str]) -> str:
    """Why Cohen's κ is undefined: chance explains all the agreement there is."""
    if items <= 1:
        return "one answer only"
    if len(labels) == 1:
        (label,) = labels
        return f"every answer was {label}, on both sides"
    return "chance explains all agreement"


def _blank(kappa: float | None, items: int, labels: set[str]) -> str | None:
    """Why κ is not shown: blank in the view, or over a single answer (where the view's 0 for
    one disagreement says nothing about chance)."""
    return blank_kappa(items, labels) if kappa is None or items <= 1 else None


def _questions(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    questions: dict[str, str] = {}
    for (rubric,) in conn.execute(
        "SELECT domain_snapshot -> '$.rubric.criteria' FROM plans ORDER BY created_at"
    ).fetchall():
        for criterion in msgspec.json.decode(rubric) if rubric else []:
            questions[str(criterion.get("id"))] = str(criterion.get("question", ""))
    return questions


def _order(criterion: str, judge: str) -> tuple[bool, str, bool, str]:
    return (criterion != OVERALL, criterion, judge != PASS_RULE_JUDGE, judge)


def agreement(conn: duckdb.DuckDBPyConnection) -> Agreement:
    conversations, reviewers, reviews = conn.execute(REVIEWED_SQL).fetchone()
    cells: dict[tuple[str, str], list[Cell]] = {}
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for criterion, judge, person, said, count, distinct, is_cell in conn.execute(
        CELLS_SQL
    ).fetchall():
        key = (criterion, judge)
        if is_cell:
            cells.setdefault(key, []).append(Cell(person, said, distinct, count))
        else:
            totals[key] = (distinct, count)
    figures = {
        (criterion, judge): (people, agreed, kappa)
        for criterion, judge, people, agreed, kappa in conn.execute(
            "SELECT criterion_id, judge_id, reviewers, percent_agreement, kappa "
            "FROM human_judge_agreement"
        ).fetchall()
    }
    matrices = []
    for key in sorted(totals, key=lambda k: _order(*k)):
        criterion, judge = key
        people, agreed, kappa = figures.get(key, (0, None, None))
        found = sorted(cells.get(key, []), key=lambda c: (c.person, c.judge))
        used = {c.person for c in found} | {c.judge for c in found}
        matrices.append(
            Matrix(
                criterion_id=criterion,
                judge_id=judge,
                answers=list(OVERALL_ANSWERS if criterion == OVERALL else ANSWERS),
                cells=found,
                conversations=totals[key][0],
                reviews=totals[key][1],
                reviewers=people,
                percent_agreement=agreed,
                kappa=kappa,
                kappa_blank=_blank(kappa, totals[key][1], used),
            )
        )
    pairs = []
    for criterion, a, b, items, agreed, kappa, labels in conn.execute(
        """
        SELECT r.criterion_id, r.reviewer_a, r.reviewer_b, r.items, r.percent_agreement,
               r.kappa, l.labels
        FROM reviewer_agreement r LEFT JOIN (
            SELECT a.criterion_id, a.reviewer AS reviewer_a, b.reviewer AS reviewer_b,
                   list_distinct(flatten(list([a.answer, b.answer]))) AS labels
            FROM human_verdicts a JOIN human_verdicts b USING (conversation_id, criterion_id)
            WHERE a.reviewer < b.reviewer GROUP BY ALL
        ) l USING (criterion_id, reviewer_a, reviewer_b)
        """
    ).fetchall():
        pairs.append(
            ReviewerPair(
                criterion, a, b, items, agreed, kappa,
                _blank(kappa, items, set(labels or [])),
            )
        )  # fmt: skip
    pairs.sort(key=lambda p: (p.criterion_id != OVERALL, p.criterion_id, p.reviewer_a,
                              p.reviewer_b))  # fmt: skip
    return Agreement(
        conversations=conversations,
        reviewers=reviewers,
        reviews=reviews,
        questions=_questions(conn),
        matrices=matrices,
        reviewer_pairs=pairs,
    )
