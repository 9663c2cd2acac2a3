"""Plans, scenarios and runs: what a run will do, stored before any model call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

import duckdb
import msgspec
import pyarrow as pa

from rapport.config.scenario import FlawAssignment, Persona, Scenario, TopicSeed
from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.config.shards import WHOLE_PLAN, Shard
from rapport.store.arrow_rows import insert_table, replace_rows
from rapport.store.reads import Turn, transcripts
from rapport.store.transaction import transaction

T = TypeVar("T")


class PlanRecord(msgspec.Struct, frozen=True):
    plan_id: str
    domain: str
    domain_fingerprint: str
    seed: int
    turns: int | None
    domain_snapshot: str
    created_at: datetime
    purpose: str = "corpus"  # corpus | held_out | eval


class RunRecord(msgspec.Struct, frozen=True):
    run_id: str
    plan_id: str
    command: str
    count: int
    status: str
    started_at: datetime
    user_backend: str
    assistant_backend: str
    settings: str
    rapport_version: str
    shard: str | None = None  # K/N of `generate --shard K/N`


class UnfinishedConversation(msgspec.Struct, frozen=True):
    """A planned conversation that is not complete yet, with the turns already stored."""

    scenario: Scenario
    status: str
    messages: tuple[Turn, ...]


def save_plan(conn: duckdb.DuckDBPyConnection, plan: PlanRecord) -> None:
    conn.execute(
        """
        INSERT OR IGNORE INTO plans (plan_id, domain, domain_fingerprint, seed, turns,
                                     domain_snapshot, created_at, purpose)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            plan.plan_id,
            plan.domain,
            plan.domain_fingerprint,
            plan.seed,
            plan.turns,
            plan.domain_snapshot,
            plan.created_at,
            plan.purpose,
        ],
    )


def stored_scenario_count(
    conn: duckdb.DuckDBPyConnection,
    plan_id: str,
    start: int,
    stop: int,
    shard: Shard = WHOLE_PLAN,
) -> int:
    """Scenarios of plan indices `start..stop-1` (of one shard) already stored."""
    row = conn.execute(
        "SELECT count(*) FROM scenarios "
        "WHERE plan_id = ? AND scenario_index >= ? AND scenario_index < ? "
        "AND scenario_index % ? = ?",
        [plan_id, start, stop, shard.count, shard.index],
    ).fetchone()
    return int(row[0]) if row else 0


def save_scenarios(
    conn: duckdb.DuckDBPyConnection,
    scenarios: Sequence[Scenario],
    created_at: datetime,
    *,
    held_out: bool = False,
    conversations: bool = True,
) -> None:
    """Insert scenarios and (unless told not to) their pending conversations in one
    transaction (idempotent). `held_out` scenarios never reach a training set."""
    encode = msgspec.json.encode
    scenario_rows = pa.table(
        {
            "scenario_id": [s.scenario_id for s in scenarios],
            "plan_id": [s.plan_id for s in scenarios],
            "scenario_index": pa.array([s.index for s in scenarios], pa.int32()),
            "seed": pa.array([s.seed for s in scenarios], pa.int64()),
            "persona": [encode(s.persona).decode() for s in scenarios],
            "topics": [encode(s.topics).decode() for s in scenarios],
            "flaws": [encode(s.flaws).decode() for s in scenarios],
            "topic_categories": [sorted({t.category for t in s.topics}) for s in scenarios],
            "flaw_names": [[f.name for f in s.flaws] for s in scenarios],
            "writing_style": [s.persona.writing_style for s in scenarios],
            "target_turns": pa.array([s.target_turns for s in scenarios], pa.int32()),
            "held_out": pa.array([held_out] * len(scenarios), pa.bool_()),
        }
    )
    conversation_rows = pa.table(
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
    with transaction(conn):
        insert_table(conn, "scenarios", scenario_rows, "INSERT OR IGNORE")
        if conversations:
            insert_table(conn, "conversations", conversation_rows, "INSERT OR IGNORE")


def load_unfinished(
    conn: duckdb.DuckDBPyConnection,
    plan_id: str,
    start: int,
    stop: int,
    *,
    include_failed: bool,
    decoder: ScenarioDecoder | None = None,
    shard: Shard = WHOLE_PLAN,
) -> list[UnfinishedConversation]:
    """Conversations of plan indices `start..stop-1` (of one shard) still to do, with their
    stored turns; one `decoder` across calls shares repeated topics, flaws and persona texts."""
    decoder = decoder if decoder is not None else ScenarioDecoder()
    statuses = ["pending", "running", "interrupted"] + (["failed"] if include_failed else [])
    rows = conn.execute(
        """
        SELECT s.scenario_id, s.scenario_index, s.seed, s.persona, s.topics, s.flaws,
               s.target_turns, c.status
        FROM conversations c JOIN scenarios s USING (scenario_id)
        WHERE c.plan_id = ? AND c.scenario_index >= ? AND c.scenario_index < ?
          AND c.scenario_index % ? = ? AND list_contains(?, c.status)
        ORDER BY c.scenario_index
        """,
        [plan_id, start, stop, shard.count, shard.index, statuses],
    ).fetchall()
    if not rows:
        return []
    # A pending conversation has no turns: its 'running' mark is written before its first turn.
    started = [row[0] for row in rows if row[7] != "pending"]
    stored = transcripts(conn, started) if started else {}
    return [
        UnfinishedConversation(
            scenario=decoder.scenario(plan_id, row[:7]),
            status=row[7],
            messages=tuple(stored.get(row[0], ())),
        )
        for row in rows
    ]


SCENARIO_COLUMNS = (
    "s.scenario_id, s.scenario_index, s.seed, s.persona, s.topics, s.flaws, s.target_turns"
)


class ScenarioDecoder:
    """Decodes `scenarios` rows, sharing what repeats between them: the same topic, flaw or
    persona text decodes to one object, so thousands of waiting conversations hold one copy of
    each description instead of one each."""

    def __init__(self) -> None:
        self._topics: dict[bytes, TopicSeed] = {}
        self._flaws: dict[bytes, FlawAssignment] = {}
        self._texts: dict[str, str] = {}

    def scenario(self, plan_id: str, row: tuple[object, ...]) -> Scenario:
        """A Scenario from the `SCENARIO_COLUMNS` of a `scenarios` row."""
        scenario_id, index, seed, persona, topics, flaws, target_turns = row
        return Scenario(
            scenario_id=str(scenario_id),
            plan_id=plan_id,
            index=int(index),  # type: ignore[call-overload]
            seed=int(seed),  # type: ignore[call-overload]
            persona=self._persona(str(persona)),
            topics=self._shared(str(topics), TopicSeed, self._topics),
            flaws=self._shared(str(flaws), FlawAssignment, self._flaws),
            target_turns=int(target_turns),  # type: ignore[call-overload]
        )

    def _persona(self, text: str) -> Persona:
        persona = msgspec.json.decode(text, type=Persona)
        share = self._text
        return Persona(
            name=share(persona.name),
            attributes={share(k): share(v) for k, v in persona.attributes.items()},
            traits=tuple(share(t) for t in persona.traits),
            writing_style=share(persona.writing_style),
            word_limit=persona.word_limit,
            cooperation={share(k): v for k, v in persona.cooperation.items()},
        )

    def _text(self, text: str) -> str:
        return self._texts.setdefault(text, text)

    @staticmethod
    def _shared(text: str, kind: type[T], seen: dict[bytes, T]) -> tuple[T, ...]:
        items = []
        for raw in msgspec.json.decode(text, type=tuple[msgspec.Raw, ...]):
            key = bytes(raw)
            item = seen.get(key)
            if item is None:
                item = seen[key] = msgspec.json.decode(key, type=kind)
            items.append(item)
        return tuple(items)


def scenario_from_row(plan_id: str, row: tuple[object, ...]) -> Scenario:
    """A Scenario from the `SCENARIO_COLUMNS` of a `scenarios` row (nothing shared)."""
    return ScenarioDecoder().scenario(plan_id, row)


def start_run(
    conn: duckdb.DuckDBPyConnection, run: RunRecord, redactor: Redactor = PATTERNS_ONLY
) -> None:
    """Record a run; its settings and backend labels are redacted (a key in a base_url)."""
    conn.execute(
        """
        INSERT INTO runs (run_id, plan_id, command, count, status, started_at, user_backend,
                          assistant_backend, settings, rapport_version, shard)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            run.run_id,
            run.plan_id,
            run.command,
            run.count,
            run.status,
            run.started_at,
            redactor.optional(run.user_backend),
            redactor.optional(run.assistant_backend),
            redactor.optional(run.settings),
            run.rapport_version,
            run.shard,
        ],
    )


def status_counts_below(
    conn: duckdb.DuckDBPyConnection, plan_id: str, count: int, shard: Shard = WHOLE_PLAN
) -> dict[str, int]:
    """Conversations of the plan's first `count` scenarios (of one shard), by status."""
    rows = conn.execute(
        "SELECT status, count(*) FROM conversations "
        "WHERE plan_id = ? AND scenario_index < ? AND scenario_index % ? = ? GROUP BY status",
        [plan_id, count, shard.count, shard.index],
    ).fetchall()
    return {status: int(n) for status, n in rows}


def record_judged_count(conn: duckdb.DuckDBPyConnection, run_id: str, judged: int) -> None:
    """A judge run's count is the conversations it judged (known once it has run)."""
    conn.execute("UPDATE runs SET count = ? WHERE run_id = ?", [judged, run_id])


def finish_run(conn: duckdb.DuckDBPyConnection, run_id: str, status: str, at: datetime) -> None:
    conn.execute(
        "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", [status, at, run_id]
    )


class StopReason(msgspec.Struct, frozen=True):
    """Why a run stopped before its end (a provider that cannot be used), stored with the
    conversations it interrupted."""

    kind: str
    message: str


def release_unfinished(
    conn: duckdb.DuckDBPyConnection, run_id: str, reason: StopReason | None, at: datetime
) -> None:
    """The conversations a stopped run left `running` become `interrupted` (the next run
    resumes them), each with the reason and an `errors` row when there is one."""
    with transaction(conn):
        if reason is not None:
            conn.execute(
                "INSERT INTO errors (run_id, conversation_id, kind, message, created_at) "
                "SELECT run_id, conversation_id, ?, ?, ? FROM conversations "
                "WHERE run_id = ? AND status = 'running'",
                [reason.kind, reason.message, at, run_id],
            )
        conn.execute(
            "UPDATE conversations SET status = 'interrupted', error = ? "
            "WHERE run_id = ? AND status = 'running'",
            [reason.message if reason is not None else None, run_id],
        )


def mark_abandoned_runs(conn: duckdb.DuckDBPyConnection) -> None:
    """Runs still marked running when a new run holds the lock were killed: say so."""
    conn.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")


def save_gateway_stats(
    conn: duckdb.DuckDBPyConnection,
    snapshots: Sequence[msgspec.Struct],
    redactor: Redactor = PATTERNS_ONLY,
) -> None:
    """Replace this run's gateway counters with the latest snapshot (names redacted)."""
    replace_rows(conn, "gateway_stats", snapshots, redactor)
