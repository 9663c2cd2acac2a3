"""What makes a DuckDB file a Rapport database: the `rapport_meta` stamp, checked before anything
is written, so a foreign file is refused untouched instead of being half-migrated.

A Rapport database carries `rapport_meta(key, value)` with `schema_version`, the
`schema_fingerprint` of the schema files that built it and the `rapport_version` that last
stamped it. Files made before the stamp (schema 1: a `meta` table with `schema_version = '1'`)
are recognised by their tables and adopted.

Changing the schema: additive changes (a new table, `ADD COLUMN IF NOT EXISTS`, a new or changed
view) only need the edit in schema.sql / views.sql — a changed fingerprint re-applies both files.
Anything else (a rename, a type change, moving data) bumps `SCHEMA_VERSION` and adds a function
to `MIGRATIONS` under the version it upgrades from; migrations run in order, in the same
transaction as the schema files and the new stamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from importlib import metadata, resources

import duckdb
import msgspec

from rapport.store.errors import StoreError

SCHEMA_VERSION = 4
UNSTAMPED_VERSION = 1  # Rapport before the stamp
STAMP_TABLE = "rapport_meta"
# The tables every unstamped Rapport file has: the first release created them together.
FIRST_RELEASE_TABLES = frozenset(
    {"meta", "plans", "runs", "scenarios", "conversations", "messages", "errors"}
)
_SHOWN_TABLES = 5

Migration = Callable[[duckdb.DuckDBPyConnection], None]


def _adopt_unstamped(conn: duckdb.DuckDBPyConnection) -> None:
    """Schema 1 → 2: the tables were checked to be Rapport's; the schema files add what is new."""


def _schema_3(conn: duckdb.DuckDBPyConnection) -> None:
    """Schema 2 → 3: `gateway_stats.roles` was a comma-joined VARCHAR, it is a VARCHAR[];
    timestamps were TIMESTAMP holding UTC by convention, they are TIMESTAMPTZ."""
    columns = conn.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal "
        "AND table_name IN (SELECT table_name FROM duckdb_tables() "
        "                   WHERE database_name = current_database())"
    ).fetchall()
    for table, column, data_type in columns:  # an older file may lack a table: schema.sql adds it
        if (table, column, data_type) == ("gateway_stats", "roles", "VARCHAR"):
            conn.execute(
                "ALTER TABLE gateway_stats ALTER roles SET DATA TYPE VARCHAR[] "
                "USING string_split(roles, ',')"
            )
        elif data_type == "TIMESTAMP":
            conn.execute(
                f'ALTER TABLE "{table}" ALTER "{column}" SET DATA TYPE TIMESTAMPTZ '
                f"USING timezone('UTC', \"{column}\")"
            )


def _schema_4(conn: duckdb.DuckDBPyConnection) -> None:
    """Schema 3 → 4: `review_queue` held one queue keyed by conversation; it holds named queues
    keyed by (queue, conversation), with the strategy, reviewer and reason of each. The one
    queue there was becomes `default`, drawn at random (the only way it could be drawn)."""
    found = conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'review_queue'"
    ).fetchall()
    if not found or ("queue",) in found:  # an older file without a queue: schema.sql adds it
        return
    conn.execute("ALTER TABLE review_queue RENAME TO review_queue_schema_3")
    conn.execute(
        "CREATE TABLE review_queue (queue VARCHAR NOT NULL, conversation_id VARCHAR NOT NULL, "
        "position INTEGER NOT NULL, stratum VARCHAR, created_at TIMESTAMPTZ NOT NULL, "
        "strategy VARCHAR NOT NULL, reviewer VARCHAR, reason VARCHAR NOT NULL, "
        "PRIMARY KEY (queue, conversation_id))"
    )
    conn.execute(
        "INSERT INTO review_queue SELECT 'default', conversation_id, position, stratum, "
        "created_at, 'random', NULL, "
        "CASE WHEN stratum IS NULL OR stratum = 'all' THEN 'random draw' "
        "ELSE 'random draw from stratum ' || stratum END FROM review_queue_schema_3"
    )
    conn.execute("DROP TABLE review_queue_schema_3")


MIGRATIONS: dict[int, Migration] = {
    UNSTAMPED_VERSION: _adopt_unstamped,
    2: _schema_3,
    3: _schema_4,
}


class Stamp(msgspec.Struct, frozen=True):
    schema_version: int
    schema_fingerprint: str | None = None
    rapport_version: str | None = None

    @property
    def is_current(self) -> bool:
        return (
            self.schema_version == SCHEMA_VERSION
            and self.schema_fingerprint == schema_fingerprint()
        )


def schema_sql(name: str) -> str:
    return (resources.files("rapport.store") / name).read_text(encoding="utf-8")


@cache
def schema_fingerprint() -> str:
    """Changes whenever schema.sql or views.sql does, so a stamped file learns of new views."""
    text = schema_sql("schema.sql") + "\n" + schema_sql("views.sql")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rapport_version() -> str:
    try:
        return metadata.version("rapport")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_stamp(conn: duckdb.DuckDBPyConnection, shown: str) -> Stamp | None:
    """The file's stamp; None for a file with nothing in it yet. Reads only.

    Raises StoreError for a file that is not a Rapport database, or one stamped by a newer Rapport.
    """
    tables = _columns_by_table(conn)
    if STAMP_TABLE in tables:
        return _stamp_of(conn, shown)
    if not tables and not _views(conn):
        return None
    if _is_unstamped_rapport(conn, tables):
        return Stamp(UNSTAMPED_VERSION)
    names = sorted(tables) or sorted(_views(conn))
    listed = ", ".join(names[:_SHOWN_TABLES]) + (", …" if len(names) > _SHOWN_TABLES else "")
    raise StoreError(
        f"{shown}: not a Rapport database (it holds {listed} and no {STAMP_TABLE} stamp); "
        "give --db a new file or a Rapport corpus"
    )


def write_stamp(conn: duckdb.DuckDBPyConnection) -> None:
    """Stamp the file (its table is in schema.sql, which runs first)."""
    values = {
        "schema_version": str(SCHEMA_VERSION),
        "schema_fingerprint": schema_fingerprint(),
        "rapport_version": rapport_version(),
    }
    conn.executemany(f"INSERT OR REPLACE INTO {STAMP_TABLE} VALUES (?, ?)", list(values.items()))


def _stamp_of(conn: duckdb.DuckDBPyConnection, shown: str) -> Stamp:
    rows = dict(conn.execute(f"SELECT key, value FROM {STAMP_TABLE}").fetchall())
    version = rows.get("schema_version", "")
    if not version.isdigit():
        raise StoreError(f"{shown}: {STAMP_TABLE} has no valid schema_version ({version!r})")
    stamp = Stamp(int(version), rows.get("schema_fingerprint"), rows.get("rapport_version"))
    if stamp.schema_version > SCHEMA_VERSION:
        raise StoreError(
            f"{shown}: written by a newer Rapport ({stamp.rapport_version}, schema "
            f"{stamp.schema_version}; this one knows schema {SCHEMA_VERSION}): upgrade Rapport"
        )
    return stamp


def _is_unstamped_rapport(conn: duckdb.DuckDBPyConnection, tables: dict[str, set[str]]) -> bool:
    """Exactly an older Rapport's tables, each with columns Rapport gave it, and its meta row."""
    known = _rapport_columns()
    if not FIRST_RELEASE_TABLES <= tables.keys() <= known.keys():
        return False
    if any(not columns <= known[table] for table, columns in tables.items()):
        return False
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return version == (str(UNSTAMPED_VERSION),)


def _columns_by_table(conn: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    rows = conn.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND NOT internal "
        "AND table_name IN (SELECT table_name FROM duckdb_tables() "
        "                   WHERE database_name = current_database())"
    ).fetchall()
    tables: dict[str, set[str]] = {}
    for schema, table, column in rows:
        name = table if schema == "main" else f"{schema}.{table}"
        tables.setdefault(name, set()).add(column)
    return tables


def _views(conn: duckdb.DuckDBPyConnection) -> list[str]:
    rows = conn.execute(
        "SELECT view_name FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall()
    return [row[0] for row in rows]


@cache
def _rapport_columns() -> dict[str, frozenset[str]]:
    """The current schema's tables and columns, read from a scratch in-memory database."""
    with duckdb.connect(":memory:") as scratch:
        scratch.execute(schema_sql("schema.sql"))
        return {table: frozenset(columns) for table, columns in _columns_by_table(scratch).items()}
