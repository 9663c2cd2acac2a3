"""What `rapport view` shows, read as Structs: a filtered and sorted page
of conversations, one conversation with its scenario, turns, verdicts and reviews.

Every read takes an open connection: the page opens one per request through
`connect_for_reading` (a running `generate` lends it the file) and closes it at once.
"""

from __future__ import annotations

from typing import Any, Literal

import duckdb
import msgspec

from rapport.config.sides import FLAW_SEPARATOR, Side
from rapport.store.conversation_filters import filter_clauses
from rapport.store.reads import _structs
from rapport.store.rows import VerdictRow
from rapport.store.sides import SIDE_TABLES

# The columns a list can be sorted by (the key the URL carries → the SQL column).
SORTS: dict[str, str] = {
    "id": "conversation_id",
    "score": "mean_score",
    "exchanges": "exchanges",
    "cost": "cost_usd",
    "status": "status",
}


class Table(msgspec.Struct, frozen=True):
    title: str
    columns: list[str]
    rows: list[list[Any]]


class ListQuery(msgspec.Struct, frozen=True):
    """The conversations list's filters, sort and page; None matches any."""

    status: str | None = None
    passed: bool | None = None
    score_min: float | None = None
    score_max: float | None = None
    topic: str | None = None
    flaw: str | None = None
    persona: tuple[str, str] | None = None  # (attribute, value)
    judge: str | None = None  # judged by this judge
    failed: str | None = None  # a criterion answered NO, or a gate that failed
    text: str | None = None  # in any message, case-insensitive
    reviewed: bool | None = None  # by a person in `rapport view`
    simulator_failed: bool | None = None  # the user side failed its pass rule or a gate
    # a cell of the judge-vs-people matrix: (criterion, judge, person's answer, judge's answer)
    confusion: tuple[str, str, str, str] | None = None
    sort: str = "id"
    descending: bool = False
    page: int = 1
    per_page: int = 50


class ListRow(msgspec.Struct, frozen=True):
    conversation_id: str
    status: str
    exchanges: int
    topic_categories: list[str]
    flaw_names: list[str]
    writing_style: str | None
    judges: int | None
    mean_score: float | None
    passed: bool | None
    cost_usd: float | None
    reviewers: int = 0  # people who reviewed it
    simulator_failed: bool | None = None  # the user side's judgement; None: not judged


class ListPage(msgspec.Struct, frozen=True):
    rows: list[ListRow]
    total: int  # conversations matching the filters


class Facets(msgspec.Struct, frozen=True):
    """The values the list's filters offer."""

    statuses: list[str]
    topics: list[str]
    flaws: list[str]
    personas: list[tuple[str, str]]
    judges: list[str]
    failures: list[str]  # criteria and gates


class MessageView(msgspec.Struct, frozen=True):
    turn_index: int
    role: str
    content: str
    exchange: int
    final: bool
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    cost_usd: float | None
    model: str | None


class Assessment(msgspec.Struct, frozen=True):
    judge_id: str
    score: float
    passed: bool
    safety_failed: bool
    pass_threshold: float
    category_scores: dict[str, float]
    failed_gates: list[str]


class JudgeFailure(msgspec.Struct, frozen=True):
    judge_id: str
    criterion_id: str
    error: str


class Criterion(msgspec.Struct, frozen=True):
    id: str
    question: str = ""
    category: str | None = None
    gate: bool = False
    enabled: bool = True


class HumanAnswer(msgspec.Struct, frozen=True):
    reviewer: str
    criterion_id: str
    answer: Literal["YES", "NO", "NA"]
    note: str | None


class SideJudging(msgspec.Struct, frozen=True):
    """What the judges made of one side of a conversation (the assistant's or the user's)."""

    assessments: list[Assessment]
    verdicts: list[VerdictRow]
    failures: list[JudgeFailure]
    mean_score: float | None
    passed: bool | None  # by the corpus's pass rule; None: not judged
    criteria: list[Criterion]  # that side's rubric, as asked of this conversation
    pass_rule: str = "all"  # across judges (meta), the same for both sides


class ConversationDetail(msgspec.Struct, frozen=True):
    conversation_id: str
    status: str
    end_reason: str | None
    target_turns: int
    plan_id: str
    run_id: str | None
    error: str | None
    persona: dict[str, Any]
    topics: list[dict[str, Any]]
    flaws: list[dict[str, Any]]
    writing_style: str
    messages: list[MessageView]
    assessments: list[Assessment]
    verdicts: list[VerdictRow]
    failures: list[JudgeFailure]
    mean_score: float | None
    passed: bool | None  # by the corpus's pass rule; None: not judged
    criteria: list[Criterion]  # the rubric of the conversation's domain
    human: list[HumanAnswer]
    user_side: SideJudging | None = None  # the simulated user's, when its domain judges it
    pass_rule: str = "all"  # across judges (meta)


def _table(conn: duckdb.DuckDBPyConnection, title: str, sql: str) -> Table:
    cursor = conn.execute(sql)
    columns = [column[0] for column in cursor.description]
    return Table(title, columns, [list(row) for row in cursor.fetchall()])


# The list reads scenarios and judgements only; the figures that need every message (exchanges,
# cost) are summed for the page's rows alone, unless the list is sorted by them.
_LIST_BASE = """
SELECT c.conversation_id, c.status, s.topic_categories, s.flaw_names, s.writing_style,
       j.judges, j.mean_score, j.passed, coalesce(h.reviewers, 0) AS reviewers,
       NOT u.passed OR u.safety_failed AS simulator_failed
FROM corpus_conversations c JOIN scenarios s USING (scenario_id)
LEFT JOIN conversation_judgement j USING (conversation_id)
LEFT JOIN simulator_conversation_judgement u USING (conversation_id)
LEFT JOIN (
    SELECT conversation_id, count(DISTINCT reviewer) AS reviewers FROM human_verdicts
    GROUP BY conversation_id
) h USING (conversation_id)
"""
_LIST_BY_MESSAGES = """
SELECT b.*, coalesce(m.exchanges, 0) AS exchanges, m.cost_usd
FROM ({base}) b LEFT JOIN (
    SELECT conversation_id, count(*) FILTER (WHERE role = 'assistant') AS exchanges,
           sum(cost_usd) AS cost_usd
    FROM messages GROUP BY conversation_id
) m USING (conversation_id)
"""
_PAGE_FIGURES = """
SELECT conversation_id, count(*) FILTER (WHERE role = 'assistant'), sum(cost_usd)
FROM messages WHERE conversation_id IN (SELECT unnest(?)) GROUP BY conversation_id
"""


def conversation_page(conn: duckdb.DuckDBPyConnection, query: ListQuery) -> ListPage:
    """One page of the conversations matching `query`, in its order (ties by id), and how many
    match in all."""
    clauses, params = filter_clauses(query)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    column = SORTS[query.sort]
    direction = "DESC" if query.descending else "ASC"
    order = f"{column} {direction} NULLS LAST, conversation_id {direction}"
    if column == "conversation_id":
        order = f"conversation_id {direction}"
    by_messages = column in ("exchanges", "cost_usd")
    source = _LIST_BY_MESSAGES.format(base=_LIST_BASE) if by_messages else _LIST_BASE
    sql = (
        f"SELECT *, count(*) OVER () AS total FROM ({source}) {where} "
        f"ORDER BY {order} LIMIT ? OFFSET ?"
    )
    cursor = conn.execute(sql, [*params, query.per_page, (query.page - 1) * query.per_page])
    names = [c[0] for c in cursor.description]
    found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if not found:  # a page past the end still says how many match
        (total,) = conn.execute(f"SELECT count(*) FROM ({_LIST_BASE}) {where}", params).fetchone()
        return ListPage([], total)
    total = found[0]["total"]
    if not by_messages:
        figures = {
            cid: (exchanges, cost)
            for cid, exchanges, cost in conn.execute(
                _PAGE_FIGURES, [[row["conversation_id"] for row in found]]
            ).fetchall()
        }
        for row in found:
            row["exchanges"], row["cost_usd"] = figures.get(row["conversation_id"], (0, None))
    return ListPage(msgspec.convert(found, list[ListRow]), total)


def facets(conn: duckdb.DuckDBPyConnection) -> Facets:
    def column(sql: str) -> list[Any]:
        return [row[0] for row in conn.execute(sql).fetchall()]

    personas = conn.execute(
        "SELECT DISTINCT a.key, a.value ->> '$' FROM corpus_conversations c "
        "JOIN scenarios s USING (scenario_id) "
        "CROSS JOIN json_each(s.persona -> '$.attributes') AS a ORDER BY 1, 2"
    ).fetchall()
    return Facets(
        statuses=column("SELECT status FROM status_counts ORDER BY status"),
        topics=column(
            "SELECT DISTINCT unnest(topic_categories) FROM scenarios "
            "WHERE plan_id IN (SELECT plan_id FROM plans WHERE purpose <> 'eval') ORDER BY 1"
        ),
        flaws=column(
            "SELECT DISTINCT unnest(flaw_names) FROM scenarios "
            "WHERE plan_id IN (SELECT plan_id FROM plans WHERE purpose <> 'eval') ORDER BY 1"
        ),
        personas=[(key, value) for key, value in personas],
        judges=column("SELECT DISTINCT judge_id FROM assessments ORDER BY 1"),
        failures=column(
            "SELECT DISTINCT criterion_id FROM verdicts WHERE answer = 'NO' "
            "UNION SELECT DISTINCT unnest(failed_gates) FROM assessments ORDER BY 1"
        ),
    )


def conversation_detail(
    conn: duckdb.DuckDBPyConnection, conversation_id: str
) -> ConversationDetail | None:
    """Everything the conversation page shows; None when there is no such conversation."""
    found = conn.execute(
        "SELECT c.status, c.end_reason, c.target_turns, c.plan_id, c.run_id, c.error, "
        "s.persona, s.topics, s.flaws, s.writing_style, "
        "p.domain_snapshot -> '$.rubric.criteria', "
        "p.domain_snapshot -> '$.simulator_rubric.criteria' "
        "FROM conversations c JOIN scenarios s USING (scenario_id) "
        "LEFT JOIN plans p ON p.plan_id = c.plan_id WHERE c.conversation_id = ?",
        [conversation_id],
    ).fetchone()
    if found is None:
        return None
    (status, end_reason, target, plan_id, run_id, error, persona, topics, flaws, style, rubric,
     simulator_rubric) = found  # fmt: skip
    messages = _structs(
        conn,
        MessageView,
        f"SELECT {', '.join(MessageView.__struct_fields__)} FROM messages "
        "WHERE conversation_id = ? ORDER BY turn_index",
        [conversation_id],
    )
    assistant = _side_judging(conn, conversation_id, "assistant", _criteria(rubric))
    human = _structs(
        conn,
        HumanAnswer,
        "SELECT reviewer, criterion_id, answer, note FROM human_verdicts "
        "WHERE conversation_id = ? ORDER BY reviewer, criterion_id",
        [conversation_id],
    )
    user_side = None
    if simulator_rubric:
        criteria = _user_criteria(simulator_rubric, msgspec.json.decode(flaws))
        user_side = _side_judging(conn, conversation_id, "user", criteria)
    return ConversationDetail(
        conversation_id=conversation_id,
        status=status,
        end_reason=end_reason,
        target_turns=target,
        plan_id=plan_id,
        run_id=run_id,
        error=error,
        persona=msgspec.json.decode(persona),
        topics=msgspec.json.decode(topics),
        flaws=msgspec.json.decode(flaws),
        writing_style=style,
        messages=messages,
        assessments=assistant.assessments,
        verdicts=assistant.verdicts,
        failures=assistant.failures,
        mean_score=assistant.mean_score,
        passed=assistant.passed,
        criteria=assistant.criteria,
        human=human,
        user_side=user_side,
        pass_rule=assistant.pass_rule,
    )


def _criteria(rubric: str | None) -> list[Criterion]:
    found = msgspec.json.decode(rubric, type=list[Criterion]) if rubric else []
    return [criterion for criterion in found if criterion.enabled]


class _Template(Criterion, frozen=True):
    per_flaw: bool = False


def _user_criteria(simulator_rubric: str, flaws: list[dict[str, Any]]) -> list[Criterion]:
    """The user side's criteria as asked of this scenario: each `per_flaw` template once per
    planned flaw, as `<id>:<flaw>` (config.sides.rubric_for, without decoding the domain)."""
    criteria: list[Criterion] = []
    for template in msgspec.json.decode(simulator_rubric, type=list[_Template]):
        if not template.enabled:
            continue
        plain = Criterion(template.id, template.question, template.category, template.gate)
        if not template.per_flaw:
            criteria.append(plain)
            continue
        for flaw in flaws:
            name = str(flaw.get("name"))
            criteria.append(
                msgspec.structs.replace(
                    plain,
                    id=f"{template.id}{FLAW_SEPARATOR}{name}",
                    question=f"{template.question} (planned flaw: {name})",
                )
            )
    return criteria


def _side_judging(
    conn: duckdb.DuckDBPyConnection, conversation_id: str, side: Side, criteria: list[Criterion]
) -> SideJudging:
    tables = SIDE_TABLES[side]
    assessments = [
        Assessment(judge, score, passed, safety, threshold, msgspec.json.decode(scores), gates)
        for judge, score, passed, safety, threshold, scores, gates in conn.execute(
            "SELECT judge_id, score, passed, safety_failed, pass_threshold, category_scores, "
            f"failed_gates FROM {tables.assessments} WHERE conversation_id = ? "
            "ORDER BY judge_id",
            [conversation_id],
        ).fetchall()
    ]
    verdicts = _structs(
        conn,
        VerdictRow,
        f"SELECT {', '.join(VerdictRow.__struct_fields__)} FROM {tables.verdicts} "
        "WHERE conversation_id = ? ORDER BY criterion_id, judge_id",
        [conversation_id],
    )
    failures = _structs(
        conn,
        JudgeFailure,
        f"SELECT judge_id, criterion_id, error FROM {tables.judge_failures} "
        "WHERE conversation_id = ? ORDER BY judge_id, criterion_id",
        [conversation_id],
    )
    judged = conn.execute(
        f"SELECT mean_score, passed FROM {tables.judgement} WHERE conversation_id = ?",
        [conversation_id],
    ).fetchone()
    rule = conn.execute("SELECT value FROM meta WHERE key = 'pass_rule'").fetchone()
    return SideJudging(
        pass_rule=rule[0] if rule else "all",
        assessments=assessments,
        verdicts=verdicts,
        failures=failures,
        mean_score=judged[0] if judged else None,
        passed=judged[1] if judged else None,
        criteria=criteria,
    )


class EvalPair(msgspec.Struct, frozen=True):
    """One held-out scenario of an evaluation: both sides' conversations and scores, and the
    first exchange whose assistant replies differ (None: identical, or a side has none)."""

    scenario_index: int
    scenario_id: str
    baseline_id: str | None
    baseline_score: float | None
    baseline_passes: str  # passes / judges
    candidate_id: str | None
    candidate_score: float | None
    candidate_passes: str
    parted_at: int | None


def evaluations(conn: duckdb.DuckDBPyConnection) -> Table:
    return _table(
        conn,
        "Evaluations (rapport eval)",
        "SELECT eval_id, domain, baseline, candidate, scenarios, judges, pass_rule, "
        "updated_at FROM eval_runs ORDER BY created_at DESC",
    )


def eval_pairs(conn: duckdb.DuckDBPyConnection, eval_id: str) -> list[EvalPair] | None:
    """Baseline beside candidate per held-out scenario; None when there is no such eval."""
    if not conn.execute("SELECT 1 FROM eval_runs WHERE eval_id = ?", [eval_id]).fetchone():
        return None
    rows = conn.execute(
        """
        WITH sides AS (
            SELECT e.scenario_index, e.scenario_id, e.side, e.conversation_id,
                   avg(a.score) AS score,
                   count(a.judge_id) FILTER (WHERE a.passed) || ' / ' || count(a.judge_id)
                       AS passes
            FROM eval_conversations e LEFT JOIN assessments a USING (conversation_id)
            WHERE e.eval_id = ? GROUP BY ALL
        ),
        replies AS (
            SELECT e.scenario_index, e.side, m.exchange, m.content
            FROM eval_conversations e JOIN messages m USING (conversation_id)
            WHERE e.eval_id = ? AND m.role = 'assistant'
        ),
        parted AS (
            SELECT b.scenario_index, min(b.exchange) AS exchange
            FROM replies b JOIN replies c USING (scenario_index, exchange)
            WHERE b.side = 'baseline' AND c.side = 'candidate' AND b.content <> c.content
            GROUP BY ALL
        )
        SELECT s.scenario_index, s.scenario_id,
               b.conversation_id, b.score, coalesce(b.passes, ''),
               c.conversation_id, c.score, coalesce(c.passes, ''), p.exchange
        FROM (SELECT DISTINCT scenario_index, scenario_id FROM sides) s
        LEFT JOIN sides b ON b.scenario_index = s.scenario_index AND b.side = 'baseline'
        LEFT JOIN sides c ON c.scenario_index = s.scenario_index AND c.side = 'candidate'
        LEFT JOIN parted p ON p.scenario_index = s.scenario_index
        ORDER BY s.scenario_index
        """,
        [eval_id, eval_id],
    ).fetchall()
    return [EvalPair(*row) for row in rows]


def iterations(conn: duckdb.DuckDBPyConnection) -> Table:
    """Every `rapport iterate` round of every domain, each with its change from the one
    before."""
    return _table(
        conn,
        "Iterations (rapport iterate), with the change from the previous one",
        """
        WITH figures AS (
            SELECT domain, iteration, count, created_at,
                   (figures ->> '$.pass_rate')::DOUBLE AS pass_rate,
                   (figures ->> '$.mean_score')::DOUBLE AS mean_score,
                   (figures ->> '$.distinct_2')::DOUBLE AS distinct_2,
                   (figures ->> '$.complete')::INTEGER AS complete
            FROM iterations
        )
        SELECT domain, iteration, count, complete,
               round(pass_rate, 4) AS pass_rate,
               round(pass_rate - lag(pass_rate) OVER w, 4) AS pass_rate_delta,
               round(mean_score, 4) AS mean_score,
               round(mean_score - lag(mean_score) OVER w, 4) AS mean_score_delta,
               round(distinct_2, 4) AS distinct_2,
               round(distinct_2 - lag(distinct_2) OVER w, 4) AS distinct_2_delta,
               created_at
        FROM figures
        WINDOW w AS (PARTITION BY domain ORDER BY iteration)
        ORDER BY domain, iteration
        """,
    )
