"""Access to the DuckDB file from one process.

DuckDB lets one process at a time open a file for writing, and a reader in another process (a
notebook, `rapport sql`) locks it too. So a run holds one connection across its batches and lends
the file to readers after the call it is in when one of Rapport's own readers asks for a turn,
and every `lend_every_s` for any other reader. While a reader holds it, writes never give up: a
batch waits on disk beside the file (store.spool) and every later call waits, shown live
(StoreWait) and on stderr, until the file is free again, when the waiting batches are written
first, in order.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import duckdb
import msgspec

from rapport.config.constants import STORE_LOCK_RETRY_S
from rapport.store.batch import Encoded, apply_batch
from rapport.store.errors import StoreError, no_room_to_write
from rapport.store.rows import utc_now
from rapport.store.spool import Spool
from rapport.store.stamp import MIGRATIONS, SCHEMA_VERSION, read_stamp, schema_sql, write_stamp
from rapport.store.store_wait import StoreWait
from rapport.store.transaction import transaction

T = TypeVar("T")


class StoreTiming(msgspec.Struct, frozen=True):
    """How the store waits for its file. The environment can set each (tests do, to take
    seconds): RAPPORT_STORE_POLL_S, RAPPORT_STORE_LEND_EVERY_S, RAPPORT_STORE_READER_WAIT_S,
    RAPPORT_STORE_ANNOUNCE_AFTER_S."""

    poll_s: float = 0.05  # between tries to open a file another process holds
    lend_every_s: float = 2.0  # a run closes its connection this often, so readers get a turn
    lend_gap_s: float = 0.2  # and waits this long before opening it again
    reader_wait_s: float = STORE_LOCK_RETRY_S  # a reader's wait for a writing run's turn
    announce_after_s: float = 5.0  # a wait this long gets a line on stderr (quick looks: none)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> StoreTiming:
        environ = dict(os.environ) if environ is None else environ
        names = {
            "poll_s": "RAPPORT_STORE_POLL_S",
            "lend_every_s": "RAPPORT_STORE_LEND_EVERY_S",
            "reader_wait_s": "RAPPORT_STORE_READER_WAIT_S",
            "announce_after_s": "RAPPORT_STORE_ANNOUNCE_AFTER_S",
        }
        values = {}
        for field, name in names.items():
            if name in environ:
                try:
                    values[field] = float(environ[name])
                except ValueError:
                    raise StoreError(f"{name}={environ[name]!r}: not a number of seconds") from None
        return cls(**values)


def connect(
    path: Path, *, read_only: bool = False, wait_s: float | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting up to `wait_s` while another process holds it (a reader waits for
    a writing run to lend the file; it never holds a run up)."""
    timing = StoreTiming.from_environ()
    wait_s = timing.reader_wait_s if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        conn = _open(path, read_only=read_only)
        if conn is not None:
            return conn
        _ask_for_turn(path)
        if time.monotonic() >= deadline:
            raise StoreError(
                f"{path}: cannot open database: another process holds it "
                f"(waited {wait_s:g} s); try again when it is done"
            )
        time.sleep(timing.poll_s)


def _turn_signal(path: Path) -> Path:
    """A waiting reader touches the run's lock file (store.run_lock): the run lends the file
    after the call it is in, instead of at its next `lend_every_s`."""
    return path.with_name(path.name + ".lock")


def _ask_for_turn(path: Path) -> None:
    signal = _turn_signal(path)
    if signal.exists():
        with contextlib.suppress(OSError):  # not ours to touch: the periodic lend still comes
            os.utime(signal)


_HOLDER_PID = re.compile(r"PID (\d+)")


class _Held(Exception):
    """The file is held by another process (DuckDB's message names it)."""

    def __init__(self, message: str) -> None:
        found = _HOLDER_PID.search(message)
        self.holder = f"PID {found.group(1)}" if found else "another process"


def _open(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection | None:
    """One try: the connection, or None while another process holds the file."""
    try:
        return _open_or_held(path, read_only=read_only)
    except _Held:
        return None


def _open_or_held(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    if not read_only and not path.parent.exists():
        raise StoreError(f"{path}: folder {path.parent} does not exist")
    if read_only and not path.exists():
        raise StoreError(f"{path}: no such database")
    config = {"enable_external_access": "false"} if read_only else {}
    try:
        conn = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as error:
        message = str(error)
        if "lock" in message.lower():
            raise _Held(message) from None
        raise StoreError(f"{path}: cannot open database: {_first_line(message)}") from None
    except duckdb.Error as error:
        raise StoreError(f"{path}: cannot open database: {_first_line(str(error))}") from None
    conn.execute("SET TimeZone = 'UTC'")  # naive datetimes in and out are UTC (TIMESTAMPTZ)
    return conn


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def ensure_schema(conn: duckdb.DuckDBPyConnection, shown: str = "database") -> None:
    """Create the schema in a new file, or bring an older Rapport file up to date, in one
    transaction; a file stamped by this schema is left as it is, and a foreign one is refused
    before anything is written."""
    stamp = read_stamp(conn, shown)
    if stamp is not None and stamp.is_current:
        return
    with transaction(conn):
        for version in range(stamp.schema_version if stamp else SCHEMA_VERSION, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
        conn.execute(schema_sql("schema.sql"))
        conn.execute(schema_sql("views.sql"))
        write_stamp(conn)


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
    """The project's DuckDB file as this process writes it, one call at a time.

    Outside a `session()` each call opens the file and closes it afterwards. Inside one (a run),
    the connection stays open across calls and is closed only to lend the file to readers (every
    `timing.lend_every_s`) and when the session ends. A call that finds the file held by another
    process waits for it, however long (a batch of rows waits on disk: `write`).
    """

    def __init__(
        self,
        path: Path,
        *,
        timing: StoreTiming | None = None,
        on_wait: Callable[[StoreWait | None], None] | None = None,
    ) -> None:
        self.path = path
        self.timing = timing if timing is not None else StoreTiming.from_environ()
        self.on_wait = on_wait  # told when a wait starts, how it goes, and when it ends (None)
        self.spool = Spool(path)
        self.waiting: StoreWait | None = None
        self.connects = 0  # how often the file was opened (one session: rarely)
        self._limiter = anyio.CapacityLimiter(1)
        self._guard = threading.RLock()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._opened_at = 0.0
        self._closed_at = -math.inf
        self._sessions = 0
        self._announced = False
        self._opened_at_ns = 0
        self._turn_signal = _turn_signal(path)

    # -- calls ---------------------------------------------------------------------------

    def run_sync(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`work(connection)`, waiting while another process holds the file."""
        while True:
            done, result = self._attempt(work)
            if done:
                return result  # type: ignore[return-value]
            time.sleep(self.timing.poll_s)

    async def run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`work(connection)` off the event loop, one call at a time, waiting (without holding
        up other calls) while another process holds the file."""
        while True:
            async with self._limiter:
                done, result = await anyio.to_thread.run_sync(self._attempt, work)
            if done:
                return result  # type: ignore[return-value]
            await anyio.sleep(self.timing.poll_s)

    async def write(self, batch: Encoded) -> bool:
        """Apply an encoded batch in one transaction, or, while another process holds the file,
        put it on disk to be applied first when the file is free. True when written now."""
        async with self._limiter:
            return await anyio.to_thread.run_sync(self._write_or_spool, batch)

    async def settle(self) -> None:
        """Between batches: write what waits on disk if the file is free, lend it if due."""
        async with self._limiter:
            await anyio.to_thread.run_sync(self._settle)

    def initialise(self) -> None:
        try:
            self.run_sync(lambda conn: ensure_schema(conn, str(self.path)))
        except duckdb.Error as error:
            raise StoreError(
                f"{self.path}: cannot create schema: {_first_line(str(error))}"
            ) from None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Database]:
        """Keep one connection across the calls of a run (lent to readers now and then)."""
        self._sessions += 1
        try:
            yield self
        finally:
            self._sessions -= 1
            if self._sessions == 0:
                with anyio.CancelScope(shield=True):
                    async with self._limiter:
                        await anyio.to_thread.run_sync(self._close)

    # -- in the worker thread -------------------------------------------------------------

    def _attempt(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> tuple[bool, T | None]:
        with self._guard:
            conn = self._connection()
            if conn is None:
                return False, None
            try:
                return True, work(conn)
            except duckdb.Error as error:
                self._close_after_error()
                raise _no_room_or(self.path, error) from None
            finally:
                self._after_call()

    def _write_or_spool(self, batch: Encoded) -> bool:
        with self._guard:
            conn = self._connection()
            if conn is None:
                self.spool.put(batch)
                self._note_held(None)
                return False
            try:
                with transaction(conn):
                    apply_batch(conn, batch)
            except duckdb.Error as error:
                self._close_after_error()
                raise _no_room_or(self.path, error) from None
            finally:
                self._after_call()
            return True

    def _settle(self) -> None:
        with self._guard:
            if self._conn is None and self.spool.batches():
                self._connection()
            self._after_call()

    def _connection(self) -> duckdb.DuckDBPyConnection | None:
        """The open connection, or a new one with what waits on disk written first; None while
        another process holds the file."""
        if self._conn is not None:
            return self._conn
        pause = self._closed_at + self.timing.lend_gap_s - time.monotonic()
        if pause > 0 and self._sessions:
            time.sleep(pause)  # a reader polling for its turn gets it
        try:
            conn = _open_or_held(self.path, read_only=False)
        except _Held as held:
            self._note_held(held.holder)
            return None
        self.connects += 1
        self._conn, self._opened_at, self._opened_at_ns = conn, time.monotonic(), time.time_ns()
        try:
            replayed = self.spool.replay(conn, utc_now()) if self.spool.batches() else 0
        except duckdb.Error as error:
            self._close_after_error()
            raise _no_room_or(self.path, error) from None
        self._note_free(replayed)
        return conn

    def _after_call(self) -> None:
        if self._conn is None:
            return
        if (
            not self._sessions
            or time.monotonic() - self._opened_at >= self.timing.lend_every_s
            or self._reader_waiting()
        ):
            self._close()

    def _reader_waiting(self) -> bool:
        try:
            return os.stat(self._turn_signal).st_mtime_ns > self._opened_at_ns
        except OSError:
            return False

    def _close(self) -> None:
        with self._guard:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            self._closed_at = time.monotonic()
            try:
                conn.close()  # closing checkpoints, so it can find the disk full too
            except duckdb.Error as error:
                raise _no_room_or(self.path, error) from None

    def _close_after_error(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._closed_at = time.monotonic()
            with contextlib.suppress(duckdb.Error):  # the error being raised says more
                conn.close()

    # -- the wait, shown -------------------------------------------------------------------

    def _note_held(self, holder: str | None) -> None:
        if self.waiting is None:
            self.waiting = StoreWait(str(self.path), holder or "another process", utc_now())
            self._announced = False
        elif holder is not None:
            self.waiting.holder = holder
        self.waiting.spooled_batches = len(self.spool.batches())
        waited = (utc_now() - self.waiting.since).total_seconds()
        if not self._announced and waited >= self.timing.announce_after_s:
            self._announced = True
            print(
                f"rapport: {self.path} is held by {self.waiting.holder} (a reader?) since "
                f"{self.waiting.since:%H:%M:%S} UTC; the run goes on and its rows wait in "
                f"{self.spool.folder} until the file is free",
                file=sys.stderr,
                flush=True,
            )
        if self.on_wait is not None:
            self.on_wait(self.waiting)

    def _note_free(self, replayed: int) -> None:
        if self.waiting is None:
            return
        if self._announced:
            waited = (utc_now() - self.waiting.since).total_seconds()
            print(
                f"rapport: {self.path} is free again after {waited:.1f} s; "
                f"{replayed} waiting batch(es) written",
                file=sys.stderr,
                flush=True,
            )
        self.waiting = None
        if self.on_wait is not None:
            self.on_wait(None)


def _no_room_or(path: Path, error: duckdb.Error) -> BaseException:
    """A disk-full failure as one line; any other error as it was."""
    return no_room_to_write(path, error) or error
