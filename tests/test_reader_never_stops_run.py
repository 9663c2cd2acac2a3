"""A reader in another process (a notebook's plain read-only DuckDB connection) holding the
database for longer than a reader's own wait never stops a run: rows wait on disk beside the
file, the wait is shown, and once the reader lets go every conversation and message is stored
exactly once and the run exits 0. Also: batches left on disk by a crash are written exactly once
by the next process that opens the file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import duckdb
import pytest
from rich.console import Console

from rapport._live_table import progress_table
from rapport.cli.exit_codes import OK
from rapport.config.prices import load_prices
from rapport.engine.progress import RunProgress
from rapport.store.batch import apply_batch, encode_batch
from rapport.store.database import Database, StoreTiming
from rapport.store.rows import ConversationUpdate, ErrorRow, MessageRow, StoreEvent, utc_now
from rapport.store.spool import Spool, read_batch

COUNT, TURNS = 24, 3
HOLD_S = 4.0  # the reader's hold: longer than the writer's lending period and the reader wait
FAST = {
    "RAPPORT_STORE_LEND_EVERY_S": "0.3",
    "RAPPORT_STORE_READER_WAIT_S": "1",
    "RAPPORT_STORE_ANNOUNCE_AFTER_S": "1",
}

# Waits for its turn at the file (a writing run lends it every 0.3 s), takes it only once turns
# are stored, says so, holds it HOLD_S seconds, and lets go.
READER = textwrap.dedent(
    """
    import sys, time, duckdb
    db, hold = sys.argv[1], float(sys.argv[2])
    while True:
        try:
            conn = duckdb.connect(db, read_only=True)
        except duckdb.Error:
            time.sleep(0.02)
            continue
        try:
            stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        except duckdb.Error:
            stored = 0
        if stored:
            break
        conn.close()
        time.sleep(0.02)
    print(stored, flush=True)
    time.sleep(hold)
    conn.close()
    """
)


def _spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
    )


@pytest.mark.slow
def test_a_reader_holding_the_file_mid_run_delays_rows_and_loses_none(tmp_path: Path) -> None:
    db = tmp_path / "corpus.duckdb"
    run = _spawn(
        "-m", "rapport", "generate", "--db", str(db), "--count", str(COUNT),
        "--turns", str(TURNS), "--backend", "simulated:latency_ms=40", "--max-active", "2",
        "--quiet", env=FAST,
    )  # fmt: skip
    reader = _spawn("-c", READER, str(db), str(HOLD_S), env={})
    stored_when_taken = int(reader.communicate(timeout=120)[0].strip())
    assert reader.returncode == 0
    run_was_going = run.poll() is None
    _, stderr = run.communicate(timeout=180)

    assert run.returncode == OK, stderr
    assert run_was_going, "the reader took the file only after the run had ended"
    assert "is held by" in stderr and "is free again after" in stderr, stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        statuses = conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
        stored, distinct, expected = conn.execute(
            "SELECT count(*), count(DISTINCT (conversation_id, turn_index)), "
            "(SELECT sum(num_messages) FROM conversations) FROM messages"
        ).fetchone()
        spooled = conn.execute("SELECT count(*) FROM spooled_batches").fetchone()[0]
        run_status = conn.execute("SELECT status FROM runs").fetchall()
    assert statuses == [("complete", COUNT)]
    assert stored == distinct == expected > stored_when_taken
    assert spooled > 0, "no batch waited on disk: the reader never held the file mid-run"
    assert run_status == [("finished",)]
    assert not any(Spool(db).folder.iterdir())


def _message(cid: str, turn: int) -> MessageRow:
    return MessageRow(
        cid, turn, "user_sim" if turn % 2 == 0 else "assistant", f"turn {turn}", turn // 2,
        False, 5, 7, 1.0, "simulated", "sim", "run-1", utc_now(),
    )  # fmt: skip


def _seed(db: Path) -> None:
    database = Database(db)
    database.initialise()
    database.run_sync(
        lambda conn: conn.execute(
            "INSERT INTO conversations (conversation_id, scenario_id, plan_id, scenario_index, "
            "target_turns, status, created_at) VALUES ('c', 's', 'p', 0, 2, 'running', now())"
        )
    )


def _held_while(db: Path, work) -> None:
    """Run `work()` in this process while another process holds `db` read-only."""
    holder = _spawn(
        "-c",
        "import sys, duckdb, time; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print('held', flush=True); time.sleep(600)",
        str(db),
        env={},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        work()
    finally:
        holder.kill()
        holder.wait()


def test_batches_written_to_disk_while_held_are_written_once_by_the_next_process(tmp_path):
    db = tmp_path / "corpus.duckdb"
    _seed(db)
    events = [StoreEvent(message=_message("c", turn)) for turn in range(4)]
    events[0] = StoreEvent(
        message=_message("c", 0),
        error=ErrorRow("run-1", "c", 0, "user_sim", "timeout", "slow", utc_now()),
    )
    events.append(
        StoreEvent(update=ConversationUpdate("c", "complete", "run-1", utc_now(), "target", 4))
    )
    first = Database(db, timing=StoreTiming(poll_s=0.01))
    written_now: list[bool] = []

    def spool_both_halves() -> None:
        for half in (events[:2], events[2:]):
            written_now.append(anyio.run(first.write, encode_batch(half)))

    _held_while(db, spool_both_halves)
    assert written_now == [False, False]
    assert first.waiting is not None and first.waiting.spooled_batches == 2
    # The process ends here (a crash: nothing replayed). The first batch is then written as a
    # replay writes it, and its folder left behind: a crash between that commit and the removal.
    spool = Spool(db)
    waiting = spool.batches()
    assert len(waiting) == 2
    with duckdb.connect(str(db)) as conn:
        conn.execute("BEGIN TRANSACTION")
        apply_batch(conn, read_batch(waiting[0]))
        conn.execute("INSERT INTO spooled_batches VALUES (?, now())", [waiting[0].name])
        conn.execute("COMMIT")
    (spool.folder / ".tmp-half-written").mkdir()  # a crash while spooling leaves a .tmp folder

    Database(db).initialise()  # the next process to open the file writes what waits, in order

    with duckdb.connect(str(db), read_only=True) as conn:
        messages = conn.execute("SELECT turn_index FROM messages ORDER BY 1").fetchall()
        errors = conn.execute("SELECT count(*) FROM errors").fetchone()[0]
        status = conn.execute("SELECT status, num_messages FROM conversations").fetchall()
        batches = conn.execute("SELECT count(*) FROM spooled_batches").fetchone()[0]
    assert messages == [(0,), (1,), (2,), (3,)]
    assert errors == 1
    assert status == [("complete", 4)]
    assert batches == 2
    assert spool.batches() == [] and not any(spool.folder.iterdir())


def test_a_call_waits_for_the_file_and_then_writes_what_waited_first(tmp_path):
    """A query during the wait (gateway stats, the run's end) waits without giving up, and sees
    the batches that waited on disk already written."""
    db = tmp_path / "corpus.duckdb"
    _seed(db)
    database = Database(db, timing=StoreTiming(poll_s=0.01))
    seen: list[int] = []

    async def go() -> None:
        await database.write(encode_batch([StoreEvent(message=_message("c", 0))]))
        assert database.waiting is not None

    _held_while(db, lambda: anyio.run(go))
    seen.append(
        database.run_sync(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
    )
    assert seen == [1]
    assert database.waiting is None


def test_the_live_display_shows_the_wait(tmp_path):
    """The run's progress learns of the wait from the store, and the live table shows it."""
    db = tmp_path / "corpus.duckdb"
    _seed(db)
    progress = RunProgress(total=1)
    database = Database(db, timing=StoreTiming(poll_s=0.01), on_wait=progress.note_store_wait)

    def write_held() -> None:
        anyio.run(database.write, encode_batch([StoreEvent(message=_message("c", 0))]))
        screen = io.StringIO()
        Console(file=screen, width=300).print(progress_table(progress, {}, load_prices({})))
        shown.append(screen.getvalue())

    shown: list[str] = []
    _held_while(db, write_held)
    assert progress.store_wait is not None and progress.store_wait.spooled_batches == 1
    assert f"writer waiting for {db} held by PID" in shown[0]
    assert "1 batches waiting on disk" in shown[0]
    database.run_sync(lambda conn: None)  # free again: the waiting batch is written
    assert progress.store_wait is None
