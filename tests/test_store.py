"""The store: idempotent writes, completion in the same transaction as the last turn."""

from __future__ import annotations

import anyio
import duckdb
import pytest

from rapport.config.scenario import Persona, Scenario
from rapport.store.database import Database
from rapport.store.plans import load_unfinished, save_scenarios
from rapport.store.rows import ConversationUpdate, ErrorRow, MessageRow, StoreEvent, utc_now
from rapport.store.writer import StoreWriter, fold_updates, write_batch
from tests.clocks import advance_clock, run_with_settable_clock
from tests.conftest import HeldWrites


def _scenario(index: int) -> Scenario:
    persona = Persona("Ada", {"age": "30"}, ("calm",), "plain", (10, 20), {"engage": 1.0})
    return Scenario(f"p-{index}", "p", index, index, persona, (), (), 2)


def _message(cid: str, turn: int, text: str = "hi") -> MessageRow:
    return MessageRow(
        cid,
        turn,
        "user" if turn % 2 == 0 else "assistant",
        text,
        turn // 2 + 1,
        False,
        3,
        4,
        1.0,
        "simulated",
        "rapport-simulator",
        "run",
        utc_now(),
    )


@pytest.fixture
def database(db_path) -> Database:
    database = Database(db_path)
    database.initialise()
    database.run_sync(
        lambda conn: save_scenarios(conn, [_scenario(i) for i in range(3)], utc_now())
    )
    return database


def test_saving_scenarios_twice_stores_them_once(database):
    database.run_sync(
        lambda conn: save_scenarios(conn, [_scenario(i) for i in range(3)], utc_now())
    )
    count = database.run_sync(
        lambda conn: conn.execute("SELECT count(*) FROM conversations").fetchone()
    )
    assert count == (3,)


def test_writing_the_same_turn_twice_keeps_the_first(database):
    database.run_sync(
        lambda conn: write_batch(conn, [StoreEvent(message=_message("p-0", 0, "first"))])
    )
    database.run_sync(
        lambda conn: write_batch(conn, [StoreEvent(message=_message("p-0", 0, "again"))])
    )
    rows = database.run_sync(lambda conn: conn.execute("SELECT content FROM messages").fetchall())
    assert rows == [("first",)]


def test_completion_travels_with_the_last_turn(database):
    done = ConversationUpdate(
        "p-1", "complete", "run", utc_now(), end_reason="target_reached", num_messages=2
    )
    events = [
        StoreEvent(update=ConversationUpdate("p-1", "running", "run", utc_now())),
        StoreEvent(message=_message("p-1", 0)),
        StoreEvent(message=_message("p-1", 1), update=done),
    ]
    database.run_sync(lambda conn: write_batch(conn, events))
    row = database.run_sync(
        lambda conn: conn.execute(
            "SELECT status, end_reason, num_messages, started_at IS NOT NULL, completed_at IS NOT NULL "
            "FROM conversations WHERE conversation_id = 'p-1'"
        ).fetchone()
    )
    assert row == ("complete", "target_reached", 2, True, True)


def test_a_failed_batch_writes_nothing(database):
    bad = StoreEvent(
        message=_message("p-2", 0),
        error=ErrorRow("run", "p-2", 0, "user", "x", "y", utc_now()),
        update=ConversationUpdate("p-2", "complete", "run", utc_now()),
    )

    def write_then_fail(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("DROP TABLE errors")  # force the batch's error insert to fail
        write_batch(conn, [bad])

    with pytest.raises(duckdb.Error):
        database.run_sync(write_then_fail)
    database.run_sync(
        lambda conn: conn.execute("CREATE TABLE IF NOT EXISTS errors AS SELECT 1 AS x")
    )
    assert database.run_sync(
        lambda conn: conn.execute("SELECT count(*) FROM messages").fetchone()
    ) == (0,)
    status = database.run_sync(
        lambda conn: conn.execute(
            "SELECT status FROM conversations WHERE conversation_id='p-2'"
        ).fetchone()
    )
    assert status == ("pending",)


def test_folding_keeps_the_start_and_the_final_status():
    start = utc_now()
    changes = fold_updates(
        [
            ConversationUpdate("c", "running", "r", start),
            ConversationUpdate(
                "c", "complete", "r", utc_now(), end_reason="goodbye", num_messages=6
            ),
        ]
    )
    assert len(changes) == 1
    assert changes[0].status == "complete" and changes[0].started_at == start
    assert changes[0].end_reason == "goodbye" and changes[0].num_messages == 6


def test_writer_flushes_by_count_and_at_the_end(database):
    flushed: list[int] = []
    writer = StoreWriter(database, flush_rows=4, flush_interval_s=60, on_flush=flushed.append)

    async def go() -> None:
        send, receive = anyio.create_memory_object_stream[StoreEvent](100)
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run, receive)
            async with send:
                for turn in range(10):
                    await send.send(StoreEvent(message=_message("p-0", turn)))

    anyio.run(go)
    assert flushed == [4, 4, 2]
    assert database.run_sync(
        lambda conn: conn.execute("SELECT count(*) FROM messages").fetchone()
    ) == (10,)


def test_writer_flushes_on_its_timer(database):
    flushed: list[int] = []

    async def go() -> None:
        timer_flushed = anyio.Event()

        def on_flush(rows: int) -> None:
            flushed.append(rows)
            timer_flushed.set()

        writer = StoreWriter(database, flush_rows=1000, flush_interval_s=60, on_flush=on_flush)
        send, receive = anyio.create_memory_object_stream[StoreEvent](100)
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run, receive)
            async with send:
                await send.send(StoreEvent(message=_message("p-0", 0)))
                await anyio.wait_all_tasks_blocked()  # the writer holds it, waiting for more
                assert flushed == []  # far from a full batch, and the minute has not passed
                advance_clock(60)
                with anyio.fail_after(30):  # only so that a writer without a timer fails
                    await timer_flushed.wait()
                assert flushed == [1]  # written by the timer while the stream is still open

    run_with_settable_clock(go)


def test_a_timer_flush_commits_what_was_pending_not_what_arrives_during_it(database):
    """Rows arriving while a batch commits wait for the next batch: a flush that chased them
    would commit a trickle of tiny transactions back to back."""
    flushed: list[int] = []
    held = HeldWrites(database)

    async def go() -> None:
        first = anyio.Event()

        def on_flush(rows: int) -> None:
            flushed.append(rows)
            first.set()

        writer = StoreWriter(database, flush_rows=1000, flush_interval_s=60, on_flush=on_flush)
        send, receive = anyio.create_memory_object_stream[StoreEvent](100)
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run, receive)
            async with send:
                await send.send(StoreEvent(message=_message("p-0", 0)))
                await anyio.wait_all_tasks_blocked()
                advance_clock(60)
                with anyio.fail_after(30):
                    await held.committing.wait()  # the timer's batch of one is being written
                for turn in range(1, 6):
                    await send.send(StoreEvent(message=_message("p-0", turn)))
                held.release.set()
                with anyio.fail_after(30):
                    await first.wait()
                for turn in range(6, 11):
                    await send.send(StoreEvent(message=_message("p-0", turn)))
                await anyio.wait_all_tasks_blocked()
                advance_clock(60)
        assert flushed == [1, 10]

    run_with_settable_clock(go)


def test_unfinished_conversations_come_back_with_their_turns(database):
    events = [
        StoreEvent(update=ConversationUpdate("p-0", "running", "run", utc_now())),
        StoreEvent(message=_message("p-0", 0, "hello")),
    ]
    database.run_sync(lambda conn: write_batch(conn, events))
    jobs = database.run_sync(lambda conn: load_unfinished(conn, "p", 0, 10, include_failed=True))
    assert [job.scenario.scenario_id for job in jobs] == ["p-0", "p-1", "p-2"]
    assert [m.content for m in jobs[0].messages] == ["hello"]
    assert jobs[1].messages == ()
