"""What `rapport eval` stores and reads: eval runs, which conversation played which held-out
scenario on which side, and the judged scores of both sides."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import msgspec
import pyarrow as pa

from rapport.config.sides import Side
from rapport.store.arrow_rows import insert_table
from rapport.store.reads import Turn, transcripts
from rapport.store.sides import SIDE_TABLES

SIDES = ("baseline", "candidate")


class EvalRunRecord(msgspec.Struct, frozen=True):
    eval_id: str
    domain: str
    held_out_plan_id: str
    seed: int
    turns: int | None
    baseline: str
    candidate: str
    user_sim: str
    judges: list[str]
    pass_rule: str
    scenarios: int
    created_at: datetime
    updated_at: datetime


class EvalConversation(msgspec.Struct, frozen=True):
    side: str
    scenario_index: int
    scenario_id: str  # the held-out scenario
    conversation_id: str


class JudgedSide(msgspec.Struct, frozen=True):
    """One judge's assessment of one side's conversation of one scenario."""

    side: str
    scenario_index: int
    judge_id: str
    score: float
    passed: bool
    safety_failed: bool
    category_scores: dict[str, float]
    failed_gates: list[str]


def save_eval_run(conn: duckdb.DuckDBPyConnection, run: EvalRunRecord) -> None:
    """Create the eval run, or record a new invocation of it (a larger N, other judges)."""
    conn.execute(
        """
        INSERT INTO eval_runs (eval_id, domain, held_out_plan_id, seed, turns, baseline,
                               candidate, user_sim, judges, pass_rule, scenarios, created_at,
                               updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (eval_id) DO UPDATE SET
            judges = excluded.judges, pass_rule = excluded.pass_rule,
            scenarios = greatest(eval_runs.scenarios, excluded.scenarios),
            updated_at = excluded.updated_at
        """,
        [
            run.eval_id,
            run.domain,
            run.held_out_plan_id,
            run.seed,
            run.turns,
            run.baseline,
            run.candidate,
            run.user_sim,
            run.judges,
            run.pass_rule,
            run.scenarios,
            run.created_at,
            run.updated_at,
        ],
    )


def save_eval_conversations(
    conn: duckdb.DuckDBPyConnection, eval_id: str, rows: Sequence[EvalConversation]
) -> None:
    table = pa.table(
        {
            "eval_id": [eval_id] * len(rows),
            "side": [r.side for r in rows],
            "scenario_index": pa.array([r.scenario_index for r in rows], pa.int32()),
            "scenario_id": [r.scenario_id for r in rows],
            "conversation_id": [r.conversation_id for r in rows],
        }
    )
    insert_table(conn, "eval_conversations", table, "INSERT OR IGNORE")


def save_eval_summary(conn: duckdb.DuckDBPyConnection, eval_id: str, summary: str) -> None:
    conn.execute("UPDATE eval_runs SET summary = ? WHERE eval_id = ?", [summary, eval_id])


def status_counts(
    conn: duckdb.DuckDBPyConnection, eval_id: str, count: int
) -> dict[str, dict[str, int]]:
    """side -> conversation status -> conversations, over scenarios `0..count-1`."""
    counts: dict[str, dict[str, int]] = {side: {} for side in SIDES}
    for side, status, n in conn.execute(
        """
        SELECT e.side, c.status, count(*) FROM eval_conversations e
        JOIN conversations c USING (conversation_id)
        WHERE e.eval_id = ? AND e.scenario_index < ? GROUP BY ALL
        """,
        [eval_id, count],
    ).fetchall():
        counts[side][status] = int(n)
    return counts


def judged_sides(
    conn: duckdb.DuckDBPyConnection,
    eval_id: str,
    judges: Sequence[str],
    count: int,
    speaker: Side = "assistant",
) -> list[JudgedSide]:
    """Every assessment by the given judges of this eval's conversations (scenarios < count):
    of the assistant's side, or of the simulated user's (`speaker="user"`)."""
    rows = conn.execute(
        f"""
        SELECT e.side, e.scenario_index, a.judge_id, a.score, a.passed, a.safety_failed,
               a.category_scores, a.failed_gates
        FROM eval_conversations e
        JOIN conversations c USING (conversation_id)
        JOIN {SIDE_TABLES[speaker].assessments} a USING (conversation_id)
        WHERE e.eval_id = ? AND e.scenario_index < ? AND c.status = 'complete'
          AND list_contains(?, a.judge_id)
        ORDER BY e.side, e.scenario_index, a.judge_id
        """,
        [eval_id, count, list(judges)],
    ).fetchall()
    decode = msgspec.json.decode
    return [
        JudgedSide(
            side=side,
            scenario_index=int(index),
            judge_id=judge_id,
            score=float(score),
            passed=bool(passed),
            safety_failed=bool(safety_failed),
            category_scores=decode(categories, type=dict[str, float]),
            failed_gates=list(gates),
        )
        for side, index, judge_id, score, passed, safety_failed, categories, gates in rows
    ]


def criterion_answers(
    conn: duckdb.DuckDBPyConnection, eval_id: str, judges: Sequence[str], count: int
) -> list[tuple[str, str, str, int]]:
    """(side, criterion, answer, verdicts) for the given judges over scenarios < count."""
    rows = conn.execute(
        """
        SELECT e.side, v.criterion_id, v.answer, count(*)
        FROM eval_conversations e JOIN verdicts v USING (conversation_id)
        WHERE e.eval_id = ? AND e.scenario_index < ? AND list_contains(?, v.judge_id)
        GROUP BY ALL ORDER BY ALL
        """,
        [eval_id, count, list(judges)],
    ).fetchall()
    return [(side, cid, answer, int(n)) for side, cid, answer, n in rows]


def side_transcripts(
    conn: duckdb.DuckDBPyConnection, eval_id: str, indices: Sequence[int]
) -> dict[tuple[str, int], list[Turn]]:
    """(side, scenario index) -> transcript, for the given scenarios."""
    pairs = conn.execute(
        "SELECT side, scenario_index, conversation_id FROM eval_conversations "
        "WHERE eval_id = ? AND list_contains(?, scenario_index)",
        [eval_id, list(indices)],
    ).fetchall()
    found = transcripts(conn, [cid for _, _, cid in pairs])
    return {(side, int(index)): found[cid] for side, index, cid in pairs}


def latest_corpus_plan(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The corpus plan generated last (its domain is what a candidate was trained on)."""
    row = conn.execute(
        "SELECT plan_id FROM plans WHERE purpose = 'corpus' ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else None
