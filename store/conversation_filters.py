"""The conversation filters as SQL, written once: `reads.conversations` (a `ConversationFilter`)
and the viewer's list (a `ListQuery`) both turn their filter fields into WHERE clauses here.

A filter is any Struct whose fields carry these names; a field it lacks, or one left None (or
an empty search text), matches any conversation. Each clause names the columns of the relation
it filters — `conversation_id` always, and `status`, `topic_categories`, `flaw_names`, … where
the filter has that field — so a new filter field is one entry in `CLAUSES`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec


class Clause(NamedTuple):
    sql: str  # with `?` for each parameter
    params: Callable[[Any], list[Any]] = lambda value: [value]


CLAUSES: dict[str, Clause] = {
    "status": Clause("status = ?"),
    "run_id": Clause("run_id = ?"),
    "plan_id": Clause("plan_id = ?"),
    "passed": Clause("passed = ?"),
    "score_min": Clause("mean_score >= ?"),
    "score_max": Clause("mean_score <= ?"),
    "topic": Clause("list_contains(topic_categories, ?)"),  # one of the scenario's topics
    "flaw": Clause("list_contains(flaw_names, ?)"),
    "persona": Clause(  # (attribute, value)
        "conversation_id IN (SELECT c.conversation_id FROM conversations c "
        "JOIN scenarios s USING (scenario_id) "
        "WHERE s.persona -> '$.attributes' ->> ? = ?)",
        list,
    ),
    "judge": Clause(  # judged by this judge
        "conversation_id IN (SELECT conversation_id FROM assessments WHERE judge_id = ?)"
    ),
    "failed": Clause(  # a criterion answered NO, or a gate that failed
        "conversation_id IN (SELECT conversation_id FROM verdicts "
        "WHERE criterion_id = ? AND answer = 'NO' "
        "UNION SELECT conversation_id FROM assessments WHERE list_contains(failed_gates, ?))",
        lambda value: [value, value],
    ),
    "reviewed": Clause("(reviewers > 0) = ?"),  # by a person in `rapport view`
    "simulator_failed": Clause("simulator_failed = ?"),
    "confusion": Clause(  # (criterion, judge, person's answer, judge's answer): a matrix cell
        "conversation_id IN (SELECT conversation_id FROM human_judge_pairs WHERE "
        "criterion_id = ? AND judge_id = ? AND human_answer = ? AND judge_answer = ?)",
        list,
    ),
    "text": Clause(  # in any message, case-insensitive
        "conversation_id IN "
        "(SELECT conversation_id FROM messages WHERE contains(lower(content), ?))",
        lambda value: [value.lower()],
    ),
}


def filter_clauses(filters: msgspec.Struct) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (to join with AND) and their parameters, in `filters`' field order."""
    clauses: list[str] = []
    params: list[Any] = []
    for name in filters.__struct_fields__:
        clause = CLAUSES.get(name)
        value = getattr(filters, name)
        if clause is None or value is None or value == "":
            continue
        clauses.append(clause.sql)
        params.extend(clause.params(value))
    return clauses, params
