"""The types an analyst expects from the corpus: token sums as BIGINT (int64 in Arrow and
pandas, not HUGEINT's decimal128 / float), `gateway_stats.roles` as a list, timestamps as
TIMESTAMPTZ; and a schema-2 file (roles comma-joined, naive UTC timestamps) migrated to schema 3
with its data intact."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from rapport.stages.generate import GenerateRequest, generate
from rapport.store.database import Database
from rapport.store.stamp import SCHEMA_VERSION, STAMP_TABLE
from tests.conftest import rapport_in_process


def _corpus(db_path):
    summary = generate(
        GenerateRequest(db=db_path, count=3, turns=2, backend="simulated"), environ={}
    )
    assert summary.complete == 3
    return summary


def test_sums_are_bigint_and_roles_a_list(db_path):
    _corpus(db_path)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        overview = conn.sql("SELECT * FROM conversation_overview").to_arrow_table()
        usage = conn.sql("SELECT * FROM backend_usage").to_arrow_table()
        roles = conn.execute("SELECT roles FROM gateway_stats").fetchall()
        (started,) = conn.execute("SELECT started_at FROM runs").fetchone()
        column = conn.execute(
            "SELECT data_type FROM duckdb_columns() "
            "WHERE table_name = 'gateway_stats' AND column_name = 'roles'"
        ).fetchone()
    for table in (overview, usage):
        for name in ("prompt_tokens", "completion_tokens"):
            assert table.schema.field(name).type == pa.int64(), (name, table.schema)
    assert usage.to_pandas()["prompt_tokens"].dtype == "int64"
    assert column == ("VARCHAR[]",)
    assert roles == [(["user_sim", "assistant"],)]
    assert started.tzinfo is not None and abs(datetime.now(UTC) - started).total_seconds() < 600


def _as_schema_2(db_path) -> None:
    """What schema 2 left: roles comma-joined, naive UTC timestamps, no spooled_batches."""
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE data_type = 'TIMESTAMP WITH TIME ZONE' AND NOT internal "
            "AND table_name IN (SELECT table_name FROM duckdb_tables())"
        ).fetchall():
            conn.execute(
                f"ALTER TABLE {table} ALTER {column} SET DATA TYPE TIMESTAMP "
                f"USING timezone('UTC', {column})"
            )
        conn.execute(
            "ALTER TABLE gateway_stats ALTER roles SET DATA TYPE VARCHAR "
            "USING array_to_string(roles, ',')"
        )
        conn.execute("DROP TABLE spooled_batches")
        conn.execute(f"UPDATE {STAMP_TABLE} SET value = '2' WHERE key = 'schema_version'")
        conn.execute(f"UPDATE {STAMP_TABLE} SET value = 'old' WHERE key = 'schema_fingerprint'")


def _naive_utc(value: object) -> object:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _contents(db_path) -> dict[str, list]:
    """Every row of the main tables, timestamps as naive UTC (schema 2's convention)."""
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return {
            table: [
                tuple(map(_naive_utc, row))
                for row in conn.execute(
                    f"SELECT * EXCLUDE (roles) FROM {table}"
                    if table == "gateway_stats"
                    else f"SELECT * FROM {table} ORDER BY ALL"
                ).fetchall()
            ]
            for table in ("conversations", "messages", "runs", "plans", "gateway_stats")
        }


def test_a_schema_2_file_is_migrated_with_its_data_intact(db_path):
    _corpus(db_path)
    _as_schema_2(db_path)
    before = _contents(db_path)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert conn.execute("SELECT roles FROM gateway_stats").fetchall() == [
            ("user_sim,assistant",)
        ]

    stats = rapport_in_process("stats", "--db", str(db_path))  # a reader brings it up to date

    assert stats.returncode == 0, stats.stderr
    assert "user_sim,assistant" in stats.stdout  # shown as before
    assert _contents(db_path) == before
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert conn.execute("SELECT roles FROM gateway_stats").fetchall() == [
            (["user_sim", "assistant"],)
        ]
        stamp = dict(conn.execute(f"SELECT key, value FROM {STAMP_TABLE}").fetchall())
        assert conn.execute("SELECT count(*) FROM spooled_batches").fetchone() == (0,)
        naive = conn.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE data_type = 'TIMESTAMP' AND NOT internal"
        ).fetchall()
    assert naive == []  # every timestamp says it is UTC
    assert stamp["schema_version"] == str(SCHEMA_VERSION) == "4"
    Database(db_path).initialise()  # a current file is left as it is
    assert _contents(db_path) == before
