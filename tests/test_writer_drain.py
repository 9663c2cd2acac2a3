"""The store writer takes what is already queued in one go, and never more than it may hold."""

from __future__ import annotations

import anyio
import pytest

from rapport.config.scenario import Persona, Scenario
from rapport.store.database import Database
from rapport.store.plans import save_scenarios
from rapport.store.rows import MessageRow, StoreEvent, utc_now
from rapport.store.writer import StoreWriter
from tests.conftest import HeldWrites


def _scenario() -> Scenario:
    persona = Persona("Ada", {"age": "30"}, ("calm",), "plain", (10, 20), {"engage": 1.0})
    return Scenario("p-0", "p", 0, 0, persona, (), (), 50)


def _event(turn: int) -> StoreEvent:
    role = "user" if turn % 2 == 0 else "assistant"
    row = MessageRow(
        "p-0", turn, role, f"turn {turn}", turn // 2 + 1, False, 3, 4, 1.0, "simulated",
        "rapport-simulator", "run", utc_now(),
    )  # fmt: skip
    return StoreEvent(message=row)


@pytest.fixture
def database(db_path) -> Database:
    database = Database(db_path)
    database.initialise()
    database.run_sync(lambda conn: save_scenarios(conn, [_scenario()], utc_now()))
    return database


def _stored_turns(database: Database) -> list[tuple[int, str]]:
    return database.run_sync(
        lambda conn: conn.execute(
            "SELECT turn_index, content FROM messages ORDER BY turn_index"
        ).fetchall()
    )


def test_events_queued_before_the_writer_runs_are_all_written_in_batches(database):
    flushed: list[int] = []
    writer = StoreWriter(database, flush_rows=4, flush_interval_s=60, on_flush=flushed.append)

    async def go() -> None:
        send, receive = anyio.create_memory_object_stream[StoreEvent](100)
        with send:
            for turn in range(30):
                send.send_nowait(_event(turn))  # all queued before the writer takes any
        await writer.run(receive)

    anyio.run(go)
    assert sum(flushed) == 30
    assert max(flushed) <= 4  # one transaction per batch of at most flush_rows
    assert _stored_turns(database) == [(turn, f"turn {turn}") for turn in range(30)]


def test_the_writer_takes_no_more_than_max_pending_while_a_batch_commits(database):
    """Backpressure: what the writer cannot hold yet stays queued, holding senders back."""
    held = HeldWrites(database)
    writer = StoreWriter(database, flush_rows=2, flush_interval_s=60, max_pending_rows=4)

    async def go() -> None:
        send, receive = anyio.create_memory_object_stream[StoreEvent](100)
        async with anyio.create_task_group() as group:
            with send:
                for turn in range(20):
                    send.send_nowait(_event(turn))
                group.start_soon(writer.run, receive)
                try:
                    with anyio.fail_after(30):
                        await held.committing.wait()
                    await anyio.wait_all_tasks_blocked()
                    queued = receive.statistics().current_buffer_used
                finally:
                    held.release.set()  # a failing check must not leave the commit held
        # 2 in the batch being committed and 2 pending: max_pending_rows taken, no more.
        assert queued == 16

    anyio.run(go)
    assert _stored_turns(database) == [(turn, f"turn {turn}") for turn in range(20)]
