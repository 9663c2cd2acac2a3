"""Access to the DuckDB file: short-lived connections so other processes can read during a run."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import duckdb

from config.constants import STORE_LOCK_RETRY_S
from store.errors import StoreError, no_room_to_write

T = TypeVar("T")

SCHEMA_VERSION = "1"
_LOCK_RETRY_PAUSE_S = 0.05


def _sql(name: str) -> str:
    return (resources.files("store") / name).read_text(encoding="utf-8")


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


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the tables and views if they are missing (idempotent)."""
    conn.execute(_sql("schema.sql"))
    conn.execute(_sql("views.sql"))
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])


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
            self.run_sync(ensure_schema)
        except duckdb.Error as error:
            raise StoreError(
                f"{self.path}: cannot create schema: {_first_line(str(error))}"
            ) from None
