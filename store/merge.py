"""`rapport merge`: the files of a plan's shards (`generate --shard K/N`) joined into one corpus.

Each shard is attached read-only and copied in by SQL (`INSERT … SELECT`, no rows through
Python), one transaction per shard, so a merge stopped half-way keeps whole shards and the same
command finishes it. Merging is idempotent: rows are keyed (plans, scenarios, runs, gateway
stats, verdicts, assessments by their primary keys; errors and judge failures by all their
columns), and a conversation is taken from a shard only when the shard holds it further along:
by status (complete > failed > running / interrupted > pending), then by stored turns. Its
messages come with it, from that one shard, and so do its judgements when they judged that very
playing (the same run). The runs of the plan (generate and judge) are kept with their gateway
stats and errors, one row each per shard run. Only the plan's rows are carried: a shard's other
tables (datasets, evaluations) stay in the shard.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import msgspec

from rapport.store.database import Database, StoreTiming, connect, connect_for_reading
from rapport.store.errors import StoreError
from rapport.store.run_lock import exclusive_run
from rapport.store.sides import SIDE_TABLES
from rapport.store.stamp import read_stamp
from rapport.store.transaction import transaction

ALIAS = "merge_shard"  # the attached shard's name inside the corpus connection
ATTACH_TRIES = 20  # a shard lent by a run that is still writing it may be taken back meanwhile

# Status precedence: a conversation is taken from the shard where it got furthest.
STATUS_RANK = (
    "CASE {0} WHEN 'complete' THEN 4 WHEN 'failed' THEN 3 WHEN 'pending' THEN 1 ELSE 2 END"
)


class PlanIdentity(msgspec.Struct, frozen=True):
    """What makes two files shards of one plan (the plan id hashes the other three)."""

    plan_id: str
    domain: str
    domain_fingerprint: str
    seed: int
    turns: int | None


class ShardMerged(msgspec.Struct, frozen=True):
    """What one shard added to the corpus (all zero when merged again unchanged)."""

    path: str
    conversations_added: int  # new to the corpus
    conversations_advanced: int  # the shard holds them further along: replaced
    messages: int  # message rows written (those of the conversations taken)
    runs_added: int


class MergeSummary(msgspec.Struct, frozen=True):
    out: str
    plan_id: str
    shards: tuple[ShardMerged, ...]
    statuses: dict[str, int]  # the corpus's conversations of the plan, by status, after merging
    missing: tuple[str, ...] = ()  # K/N of the shards not merged yet (of every N merged)


def merge_shards(out: Path, shard_paths: Sequence[Path]) -> MergeSummary:
    """Merge the shards into `out` (created if missing, or a corpus of the same plan). Every
    file is checked before anything is written: a shard of another plan, domain or seed is
    refused with one line naming it."""
    if not shard_paths:
        raise StoreError("rapport merge: no shard files given")
    if out.resolve() in {path.resolve() for path in shard_paths}:
        raise StoreError(f"{out}: is one of the shards; --out names the merged corpus")
    identities = [(path, _shard_plan(path)) for path in shard_paths]
    first_path, plan = identities[0]
    for path, identity in identities[1:]:
        difference = _difference(identity, plan, f"{first_path} has")
        if difference:
            raise StoreError(
                f"{path}: another plan: {difference}; only shards of one plan merge "
                "(nothing written)"
            )
    _check_corpus(out, plan)
    with exclusive_run(out):
        database = Database(out)
        database.initialise()
        merged = [
            database.run_sync(lambda conn, path=path: _merge_one(conn, path, plan.plan_id))
            for path in shard_paths
        ]
        statuses = database.run_sync(lambda conn: _statuses(conn, plan.plan_id))
        missing = database.run_sync(lambda conn: _missing_shards(conn, plan.plan_id))
    return MergeSummary(str(out), plan.plan_id, tuple(merged), statuses, missing)


# -- checks, read-only ----------------------------------------------------------------------


def _corpus_plans(conn: duckdb.DuckDBPyConnection) -> list[PlanIdentity]:
    rows = conn.execute(
        "SELECT plan_id, domain, domain_fingerprint, seed, turns FROM plans "
        "WHERE purpose = 'corpus' ORDER BY plan_id"
    ).fetchall()
    return [PlanIdentity(*row) for row in rows]


def _shard_plan(path: Path) -> PlanIdentity:
    """The one corpus plan a shard file plays."""
    if not path.exists():
        raise StoreError(f"{path}: no such shard file")
    with contextlib.closing(connect_for_reading(path)) as conn:
        plans = _corpus_plans(conn)
    if len(plans) != 1:
        held = f"{len(plans)} plans ({', '.join(p.plan_id for p in plans)})" if plans else "no plan"
        raise StoreError(
            f"{path}: holds {held}; a shard is the file of one `rapport generate --shard K/N`"
        )
    return plans[0]


def _check_corpus(out: Path, plan: PlanIdentity) -> None:
    """An existing --out must be a Rapport file whose corpus (if any) is this plan's."""
    if not out.exists():
        return
    with contextlib.closing(connect(out, read_only=True)) as conn:
        if read_stamp(conn, str(out)) is None:
            return  # an empty DuckDB file: the schema is created in it
    with contextlib.closing(connect_for_reading(out)) as conn:
        plans = _corpus_plans(conn)
    difference = _difference(plans[0], plan, "the shards have") if len(plans) == 1 else None
    if difference:
        raise StoreError(
            f"{out}: a corpus of another plan: {difference}; merge them into a new file "
            "(nothing written)"
        )
    if plans and plan.plan_id not in {p.plan_id for p in plans}:
        listed = ", ".join(p.plan_id for p in plans)
        raise StoreError(
            f"{out}: its corpus holds plans {listed}, not the shards' plan {plan.plan_id}"
        )


def _difference(identity: PlanIdentity, reference: PlanIdentity, against: str) -> str | None:
    """The first way `identity` is another plan than `reference` (None: the same plan), e.g.
    "seed 6, but shard-0.duckdb has seed 5"."""
    if identity.plan_id == reference.plan_id:
        return None
    if identity.domain_fingerprint != reference.domain_fingerprint:
        return (
            f"domain {identity.domain} ({identity.domain_fingerprint}), but {against} "
            f"domain {reference.domain} ({reference.domain_fingerprint})"
        )
    for field in ("seed", "turns"):
        mine, theirs = getattr(identity, field), getattr(reference, field)
        if mine != theirs:
            return f"{field} {mine}, but {against} {field} {theirs}"
    return f"plan {identity.plan_id}, but {against} plan {reference.plan_id}"


# -- the merge, in the corpus's connection --------------------------------------------------


def _merge_one(conn: duckdb.DuckDBPyConnection, path: Path, plan_id: str) -> ShardMerged:
    _attach(conn, path)
    try:
        with transaction(conn):
            merged = _copy_shard(conn, plan_id, str(path))
    finally:
        conn.execute(f"DETACH {ALIAS}")
    return merged


def _attach(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Attach the shard read-only; a run still writing it lends it to readers now and then."""
    literal = "'" + str(path).replace("'", "''") + "'"
    poll_s = StoreTiming.from_environ().poll_s
    for attempt in range(ATTACH_TRIES):
        try:
            conn.execute(f"ATTACH {literal} AS {ALIAS} (READ_ONLY)")
            return
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or attempt == ATTACH_TRIES - 1:
                raise StoreError(f"{path}: cannot attach shard: {_first_line(error)}") from None
        with contextlib.closing(connect(path, read_only=True)):
            pass  # waits for the writing run's turn, as any reader does
        time.sleep(poll_s)


def _copy_shard(conn: duckdb.DuckDBPyConnection, plan_id: str, shown: str) -> ShardMerged:
    runs_before = _count(conn, "SELECT count(*) FROM main.runs")
    _winners(conn, plan_id)
    added, advanced, messages = conn.execute(
        "SELECT count(*) FILTER (is_new), count(*) FILTER (NOT is_new), "
        "coalesce(sum(messages), 0) FROM merge_winners"
    ).fetchone() or (0, 0, 0)
    keyed = "INSERT OR REPLACE"
    _insert(conn, "plans", "INSERT OR IGNORE", "WHERE plan_id = ?", [plan_id])
    _insert(conn, "scenarios", "INSERT OR IGNORE", "WHERE plan_id = ?", [plan_id])
    _insert(conn, "conversations", keyed, "WHERE conversation_id IN (SELECT id FROM merge_winners)")
    _insert(conn, "messages", keyed, "WHERE conversation_id IN (SELECT id FROM merge_winners)")
    conn.execute(  # a taken conversation has the shard's turns only (it may hold fewer)
        f"""
        DELETE FROM main.messages m
        WHERE m.conversation_id IN (SELECT id FROM merge_winners)
          AND NOT EXISTS (SELECT 1 FROM {ALIAS}.messages s
                          WHERE s.conversation_id = m.conversation_id
                            AND s.turn_index = m.turn_index)
        """
    )
    # The checks of a taken conversation's user turns come with its turns, from the same shard.
    winners = "WHERE conversation_id IN (SELECT id FROM merge_winners)"
    conn.execute(f"DELETE FROM main.simulator_checks {winners}")
    _insert(conn, "simulator_checks", keyed, winners)
    same_playing = f"""WHERE conversation_id IN (
        SELECT s.conversation_id FROM {ALIAS}.conversations s
        JOIN main.conversations m USING (conversation_id)
        WHERE s.plan_id = ? AND s.status = m.status AND s.run_id IS NOT DISTINCT FROM m.run_id)"""
    for tables in SIDE_TABLES.values():  # the assistant's side and the simulated user's
        _insert(conn, tables.verdicts, keyed, same_playing, [plan_id])
        _insert(conn, tables.assessments, keyed, same_playing, [plan_id])
        _insert_new_rows(conn, tables.judge_failures, same_playing, [plan_id])
    plan_runs = f"WHERE run_id IN (SELECT run_id FROM {ALIAS}.runs WHERE plan_id = ?)"
    _insert(conn, "runs", keyed, "WHERE plan_id = ?", [plan_id])
    _insert(conn, "gateway_stats", keyed, plan_runs, [plan_id])
    _insert(conn, "estimates", "INSERT OR IGNORE", plan_runs, [plan_id])  # `stats` compares them
    _insert_new_rows(
        conn,
        "errors",
        f"{plan_runs} OR conversation_id IN "
        f"(SELECT conversation_id FROM {ALIAS}.conversations WHERE plan_id = ?)",
        [plan_id, plan_id],
    )
    _insert(conn, "meta", "INSERT OR IGNORE")
    conn.execute(
        f"""
        INSERT INTO main.shards BY NAME
        SELECT * FROM {ALIAS}.shards WHERE plan_id = ?
        ON CONFLICT DO UPDATE SET count = greatest(shards.count, excluded.count),
                                  updated_at = greatest(shards.updated_at, excluded.updated_at)
        """,
        [plan_id],
    )
    conn.execute("DROP TABLE merge_winners")
    return ShardMerged(
        path=shown,
        conversations_added=int(added),
        conversations_advanced=int(advanced),
        messages=int(messages),
        runs_added=_count(conn, "SELECT count(*) FROM main.runs") - runs_before,
    )


def _winners(conn: duckdb.DuckDBPyConnection, plan_id: str) -> None:
    """`merge_winners`: the shard's conversations that are new to the corpus or further along
    in the shard (a higher status, or as high with more stored turns), with their turns."""
    shard_rank, corpus_rank = STATUS_RANK.format("s.status"), STATUS_RANK.format("m.status")
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE merge_winners AS
        SELECT s.conversation_id AS id, m.conversation_id IS NULL AS is_new,
               (SELECT count(*) FROM {ALIAS}.messages t
                WHERE t.conversation_id = s.conversation_id) AS messages
        FROM {ALIAS}.conversations s
        LEFT JOIN main.conversations m USING (conversation_id)
        WHERE s.plan_id = ?
          AND (m.conversation_id IS NULL
               OR {shard_rank} > {corpus_rank}
               OR ({shard_rank} = {corpus_rank} AND s.num_messages > m.num_messages))
        """,
        [plan_id],
    )


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> str:
    """The corpus table's columns the shard has too (a shard is brought up to date before it
    is read, so these are all of them), quoted, in the corpus's order."""
    rows = conn.execute(
        "SELECT column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ? "
        "AND column_name IN (SELECT column_name FROM duckdb_columns() "
        "                    WHERE database_name = ? AND schema_name = 'main' AND table_name = ?) "
        "ORDER BY column_index",
        [table, ALIAS, table],
    ).fetchall()
    return ", ".join(f'"{name}"' for (name,) in rows)


def _insert(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    verb: str,
    where: str = "",
    parameters: Sequence[object] = (),
) -> None:
    columns = _columns(conn, table)
    conn.execute(
        f"{verb} INTO main.{table} ({columns}) SELECT {columns} FROM {ALIAS}.{table} {where}",
        list(parameters),
    )


def _insert_new_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    where: str = "",
    parameters: Sequence[object] = (),
) -> None:
    """A table without a key: the shard's rows the corpus does not hold yet (all columns)."""
    columns = _columns(conn, table)
    conn.execute(
        f"INSERT INTO main.{table} ({columns}) "
        f"SELECT {columns} FROM {ALIAS}.{table} {where} EXCEPT SELECT {columns} FROM main.{table}",
        list(parameters),
    )


def _statuses(conn: duckdb.DuckDBPyConnection, plan_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM conversations WHERE plan_id = ? GROUP BY status "
        "ORDER BY status",
        [plan_id],
    ).fetchall()
    return {status: int(n) for status, n in rows}


def _missing_shards(conn: duckdb.DuckDBPyConnection, plan_id: str) -> tuple[str, ...]:
    """The shards K/N the corpus has no row of, for each N it has a shard of."""
    rows = conn.execute(
        "SELECT shard_count, list(shard_index) FROM shards WHERE plan_id = ? GROUP BY 1 ORDER BY 1",
        [plan_id],
    ).fetchall()
    return tuple(f"{k}/{n}" for n, merged in rows for k in range(n) if k not in set(merged))


def _count(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
