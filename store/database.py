"""Access to the DuckDB file: short-lived connections so other processes can read during a run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import duckdb

from rapport.config.constants import STORE_LOCK_RETRY_S
from rapport.store.errors import StoreError, no_room_to_write
from rapport.store.stamp import MIGRATIONS, SCHEMA_VERSION, read_stamp, schema_sql, write_stamp

T = TypeVar("T")

_LOCK_RETRY_PAUSE_S = 0.05


def connect(
    path: Path, *, read_only: bool = False, wait_s: float = STORE_LOCK_RETRY_S
) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting while another process holds the write lock."""
    if not read_only and not path.parent.exists():
        raise StoreError(f"{path}: folder {path.parent} does not exist")
    if read_only and not path.exists():
        raise StoreError(f"{path}: no such database")
    config = {"enable_external_access": "false"} if read_only else {}
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as error:
            message = str(error)
            if "lock" in message.lower() and time.monotonic() < deadline:
                time.sleep(_LOCK_RETRY_PAUSE_S)
                continue
            raise StoreError(f"{path}: cannot open database: {_first_line(message)}") from None
        except duckdb.Error as error:
            raise StoreError(f"{path}: cannot open database: {_first_line(str(error))}") from None


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def ensure_schema(conn: duckdb.DuckDBPyConnection, shown: str = "database") -> None:
    """Create the schema in a new file, or bring an older Rapport file up to date, in one
    transaction; a file stamped by this schema is left as it is, and a foreign one is refused
    before anything is written."""
    stamp = read_stamp(conn, shown)
    if stamp is not None and stamp.is_current:
        return
    conn.execute("BEGIN TRANSACTION")
    try:
        for version in range(stamp.schema_version if stamp else SCHEMA_VERSION, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
        conn.execute(schema_sql("schema.sql"))
        conn.execute(schema_sql("views.sql"))
        write_stamp(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect_for_reading(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a Rapport database; a file an older Rapport wrote is brought up
    to date first. A missing, empty or foreign file is refused and never created or changed."""
    conn = connect(path, read_only=True)
    try:
        stamp = read_stamp(conn, str(path))
    except BaseException:
        conn.close()
        raise
    if stamp is not None and stamp.is_current:
        return conn
    conn.close()
    if stamp is None:
        raise StoreError(f"{path}: an empty database, not a Rapport corpus yet")
    Database(path).initialise()
    return connect(path, read_only=True)


class Database:
    """The project's DuckDB file, used from async code through one worker at a time.

    Each call opens a connection, runs, and closes it, releasing the file lock between calls
    so `rapport sql` and other readers can look at the corpus while a run streams into it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._limiter = anyio.CapacityLimiter(1)

    def run_sync(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        conn = connect(self.path)
        try:
            try:
                return work(conn)
            finally:
                conn.close()  # closing checkpoints, so it can find the disk full too
        except duckdb.Error as error:
            no_room = no_room_to_write(self.path, error)
            if no_room is None:
                raise
            raise no_room from None

    async def run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `work(connection)` off the event loop, one call at a time."""
        return await anyio.to_thread.run_sync(self.run_sync, work, limiter=self._limiter)

    def initialise(self) -> None:
        try:
            self.run_sync(lambda conn: ensure_schema(conn, str(self.path)))
        except duckdb.Error as error:
            raise StoreError(
                f"{self.path}: cannot create schema: {_first_line(str(error))}"
            ) from None
