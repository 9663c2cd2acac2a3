"""Reads and writes of `generate --until-passing`: a plan's scenarios with their strata and
conversation statuses, the conversations it admits, and where each stands against the pass
rule (the view `conversation_passes`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import msgspec
import pyarrow as pa

from rapport.config.scenario import Scenario
from rapport.config.shards import WHOLE_PLAN, Shard
from rapport.store.arrow_rows import insert_table
from rapport.store.plans import SCENARIO_COLUMNS, ScenarioDecoder, UnfinishedConversation
from rapport.store.reads import transcripts


class Candidate(msgspec.Struct, frozen=True):
    """A scenario of the plan in order: its stratum, and its conversation's status (None: no
    conversation was opened for it yet)."""

    job: UnfinishedConversation
    stratum: str
    status: str | None


class Standing(msgspec.Struct, frozen=True):
    """Where one conversation stands: its status and, once judged, the judges who assessed
    each side and whether it passes."""

    conversation_id: str
    status: str
    judges: int | None
    user_judges: int | None
    passed: bool | None

    def judged(self, judges: int, both_sides: bool) -> bool:
        """Judged by `judges` judges on the assistant's side, and on the user's if asked."""
        user = not both_sides or (self.user_judges or 0) >= judges
        return (self.judges or 0) >= judges and user


def _fully_judged(both_sides: bool) -> str:
    """The SQL condition on `conversation_passes p` of a conversation judged on every side its
    domain judges (a domain with a simulator rubric: both)."""
    return "p.user_judges IS NOT NULL" if both_sides else "true"


def load_candidates(
    conn: duckdb.DuckDBPyConnection,
    plan_id: str,
    start: int,
    stop: int,
    shard: Shard = WHOLE_PLAN,
    decoder: ScenarioDecoder | None = None,
) -> list[Candidate]:
    """The stored scenarios of plan indices `start..stop-1` (of one shard), in plan order, with
    their strata, statuses and (for a started conversation) stored turns."""
    decoder = decoder if decoder is not None else ScenarioDecoder()
    rows = conn.execute(
        f"""
        SELECT {SCENARIO_COLUMNS}, st.stratum, c.status
        FROM scenarios s JOIN scenario_strata st USING (scenario_id)
        LEFT JOIN conversations c USING (scenario_id)
        WHERE s.plan_id = ? AND s.scenario_index >= ? AND s.scenario_index < ?
          AND s.scenario_index % ? = ?
        ORDER BY s.scenario_index
        """,
        [plan_id, start, stop, shard.count, shard.index],
    ).fetchall()
    started = [row[0] for row in rows if row[8] not in (None, "pending", "complete")]
    stored = transcripts(conn, started) if started else {}
    return [
        Candidate(
            job=UnfinishedConversation(
                scenario=decoder.scenario(plan_id, row[:7]),
                status=row[8] or "pending",
                messages=tuple(stored.get(row[0], ())),
            ),
            stratum=str(row[7]),
            status=row[8],
        )
        for row in rows
    ]


def open_conversations(
    conn: duckdb.DuckDBPyConnection, scenarios: Sequence[Scenario], created_at: datetime
) -> None:
    """The pending conversations of admitted scenarios (idempotent): a scenario the run skips
    never gets one, so it is not counted as left to do."""
    rows = pa.table(
        {
            "conversation_id": [s.scenario_id for s in scenarios],
            "scenario_id": [s.scenario_id for s in scenarios],
            "plan_id": [s.plan_id for s in scenarios],
            "scenario_index": pa.array([s.index for s in scenarios], pa.int32()),
            "target_turns": pa.array([s.target_turns for s in scenarios], pa.int32()),
            "status": ["pending"] * len(scenarios),
            "created_at": pa.array([created_at] * len(scenarios), pa.timestamp("us")),
        }
    )
    insert_table(conn, "conversations", rows, "INSERT OR IGNORE")


def stratum_counts(
    conn: duckdb.DuckDBPyConnection,
    plan_id: str,
    below: int,
    shard: Shard = WHOLE_PLAN,
    *,
    both_sides: bool = False,
) -> dict[str, tuple[int, int]]:
    """Per stratum of the plan's first `below` scenarios (of one shard): (judged, passing),
    of the conversations judged on every side (`both_sides`: the user's too)."""
    rows = conn.execute(
        f"""
        SELECT st.stratum, count(*), count(*) FILTER (WHERE p.passed)
        FROM conversation_passes p
        JOIN conversations c USING (conversation_id)
        JOIN scenario_strata st USING (scenario_id)
        WHERE c.plan_id = ? AND c.scenario_index < ? AND c.scenario_index % ? = ?
          AND {_fully_judged(both_sides)}
        GROUP BY st.stratum
        """,
        [plan_id, below, shard.count, shard.index],
    ).fetchall()
    return {str(stratum): (int(judged), int(passing)) for stratum, judged, passing in rows}


def awaiting_judgement(
    conn: duckdb.DuckDBPyConnection,
    plan_id: str,
    below: int,
    shard: Shard = WHOLE_PLAN,
    *,
    both_sides: bool = False,
) -> dict[str, str]:
    """Complete conversations of the plan not judged yet on every side (a killed run's last),
    by stratum: the run judges them first, so they count as in flight."""
    rows = conn.execute(
        f"""
        SELECT c.conversation_id, st.stratum
        FROM conversations c JOIN scenario_strata st USING (scenario_id)
        WHERE c.plan_id = ? AND c.scenario_index < ? AND c.scenario_index % ? = ?
          AND c.status = 'complete'
          AND c.conversation_id NOT IN (
              SELECT conversation_id FROM conversation_passes p WHERE {_fully_judged(both_sides)}
          )
        """,
        [plan_id, below, shard.count, shard.index],
    ).fetchall()
    return {str(cid): str(stratum) for cid, stratum in rows}


def standings(conn: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> list[Standing]:
    """Where each of these conversations stands now."""
    rows = conn.execute(
        """
        SELECT c.conversation_id, c.status, p.judges, p.user_judges, p.passed
        FROM conversations c LEFT JOIN conversation_passes p USING (conversation_id)
        WHERE list_contains(?, c.conversation_id)
        """,
        [list(ids)],
    ).fetchall()
    return [Standing(str(row[0]), str(row[1]), *row[2:]) for row in rows]
