"""What the judge stage reads: complete conversations a judge has not fully assessed yet."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import msgspec

from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.config.sides import Side
from rapport.store.plans import SCENARIO_COLUMNS, scenario_from_row
from rapport.store.reads import Turn, transcripts
from rapport.store.sides import SIDE_TABLES


class JudgeJob(msgspec.Struct, frozen=True):
    """A conversation to judge, with the verdicts this judge already gave (from a killed or
    partly failed earlier run: only the missing criteria are asked again)."""

    scenario: Scenario
    messages: tuple[Turn, ...]
    existing: dict[str, tuple[str, str]]  # criterion_id -> (answer, reasoning)
    side: Side = "assistant"  # which side's rubric: the assistant's or the simulated user's


def plan_domains(conn: duckdb.DuckDBPyConnection) -> dict[str, Domain]:
    """The domain each plan was generated with (its rubric is the one to judge against)."""
    rows = conn.execute("SELECT plan_id, domain_snapshot FROM plans").fetchall()
    return {plan_id: msgspec.json.decode(snapshot, type=Domain) for plan_id, snapshot in rows}


def load_unjudged(
    conn: duckdb.DuckDBPyConnection,
    judge_id: str,
    after: str,
    limit: int,
    plan_ids: Sequence[str] | None = None,
    below_index: int | None = None,
    exclude_run: str | None = None,
    side: Side = "assistant",
    judged_plans: Sequence[str] | None = None,
) -> list[JudgeJob]:
    """Up to `limit` complete conversations (ids after `after`) without this judge's assessment
    of `side`: of the corpus, or of the given plans (an evaluation's sides), optionally only
    scenarios below an index, only of `judged_plans` (the plans whose domain judges that side)
    and not those last played by `exclude_run`."""
    source = "corpus_conversations" if plan_ids is None else "conversations"
    tables = SIDE_TABLES[side]
    rows = conn.execute(
        f"""
        SELECT c.plan_id, {SCENARIO_COLUMNS}
        FROM {source} c JOIN scenarios s USING (scenario_id)
        WHERE c.status = 'complete' AND c.conversation_id > ?
          AND (? OR list_contains(?, c.plan_id))
          AND c.scenario_index < coalesce(?, 2147483647)
          AND c.run_id IS DISTINCT FROM ?
          AND (? OR list_contains(?, c.plan_id))
          AND NOT EXISTS (SELECT 1 FROM {tables.assessments} a
                          WHERE a.conversation_id = c.conversation_id AND a.judge_id = ?)
        ORDER BY c.conversation_id LIMIT ?
        """,
        [
            after, plan_ids is None, list(plan_ids or []), below_index, exclude_run,
            judged_plans is None, list(judged_plans or []), judge_id, limit,
        ],
    ).fetchall()  # fmt: skip
    if not rows:
        return []
    ids = [row[1] for row in rows]
    messages = transcripts(conn, ids)
    existing: dict[str, dict[str, tuple[str, str]]] = {cid: {} for cid in ids}
    for cid, criterion_id, answer, reasoning in conn.execute(
        f"SELECT conversation_id, criterion_id, answer, reasoning FROM {tables.verdicts} "
        "WHERE judge_id = ? AND conversation_id IN (SELECT unnest(?))",
        [judge_id, ids],
    ).fetchall():
        existing[cid][criterion_id] = (answer, reasoning or "")
    return [
        JudgeJob(
            scenario_from_row(row[0], row[1:]), tuple(messages[row[1]]), existing[row[1]], side
        )
        for row in rows
    ]


def record_pass_rule(conn: duckdb.DuckDBPyConnection, rule: str) -> None:
    """The pass rule across judges that the views apply."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('pass_rule', ?)", [rule])


def corpus_assessment_count(conn: duckdb.DuckDBPyConnection, table: str = "assessments") -> int:
    """Assessments of corpus conversations in the database, by every judge (in `table`: the
    user side's are in simulator_assessments)."""
    row = conn.execute(
        f"SELECT count(*) FROM {table} "
        "WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)"
    ).fetchone()
    return int(row[0]) if row else 0
