"""Generation with the simulated backend: thousands of conversations, checked in SQL."""

from __future__ import annotations

import duckdb
import pytest

from rapport.stages.generate import GenerateRequest, generate
from tests.conftest import TINY_DOMAIN


def _one(conn: duckdb.DuckDBPyConnection, sql: str):
    return conn.execute(sql).fetchone()


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    db = tmp_path_factory.mktemp("thousand") / "corpus.duckdb"
    summary = generate(
        GenerateRequest(db=db, backend="simulated", count=1000, seed=11, max_active=200)
    )
    return db, summary


@pytest.mark.slow
def test_thousand_conversations_all_complete(thousand):
    db, summary = thousand
    assert summary.complete == 1000 and summary.failed == 0 and summary.pending == 0
    with duckdb.connect(str(db), read_only=True) as conn:
        assert _one(conn, "SELECT count(*) FROM conversations WHERE status = 'complete'") == (1000,)
        assert _one(conn, "SELECT count(DISTINCT conversation_id) FROM messages") == (1000,)


@pytest.mark.slow
def test_turns_are_contiguous_and_alternate(thousand):
    db, _ = thousand
    with duckdb.connect(str(db), read_only=True) as conn:
        broken = _one(
            conn,
            """
            SELECT count(*) FROM (
                SELECT conversation_id, min(turn_index) AS lo, max(turn_index) AS hi, count(*) AS n
                FROM messages GROUP BY conversation_id
            ) WHERE lo <> 0 OR hi <> n - 1
            """,
        )
        assert broken == (0,)
        misplaced = _one(
            conn,
            "SELECT count(*) FROM messages WHERE (turn_index % 2 = 0) <> (role = 'user')",
        )
        assert misplaced == (0,)


@pytest.mark.slow
def test_each_conversation_reaches_its_target(thousand):
    db, _ = thousand
    with duckdb.connect(str(db), read_only=True) as conn:
        wrong = _one(
            conn,
            """
            SELECT count(*) FROM conversations c
            JOIN (SELECT conversation_id, count(*) AS n FROM messages GROUP BY 1) m
              USING (conversation_id)
            WHERE m.n <> 2 * c.target_turns OR c.num_messages <> m.n
               OR c.end_reason <> 'target_reached'
            """,
        )
        assert wrong == (0,)
        assert _one(
            conn, "SELECT min(target_turns) >= 3, max(target_turns) <= 100 FROM conversations"
        ) == (True, True)


@pytest.mark.slow
def test_messages_carry_backend_labels_and_usage(thousand):
    db, _ = thousand
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute("SELECT DISTINCT backend, model FROM messages").fetchall()
        assert rows == [("simulated", "rapport-simulator")]
        assert _one(
            conn, "SELECT min(completion_tokens) > 0, min(length(content)) > 0 FROM messages"
        ) == (True, True)


@pytest.mark.slow
def test_rerunning_a_finished_run_changes_nothing(thousand):
    db, _ = thousand
    with duckdb.connect(str(db), read_only=True) as conn:
        before = _one(conn, "SELECT count(*), sum(hash(content)) FROM messages")
    summary = generate(GenerateRequest(db=db, backend="simulated", count=1000, seed=11))
    assert summary.turns_written == 0 and summary.complete == 1000
    with duckdb.connect(str(db), read_only=True) as conn:
        assert _one(conn, "SELECT count(*), sum(hash(content)) FROM messages") == before
        assert _one(conn, "SELECT count(*) FROM runs WHERE status = 'finished'") == (2,)


def test_same_seed_gives_the_same_corpus(tmp_path):
    first = tmp_path / "a.duckdb"
    second = tmp_path / "b.duckdb"
    generate(GenerateRequest(db=first, backend="simulated", count=30, seed=5, max_active=3))
    generate(GenerateRequest(db=second, backend="simulated", count=30, seed=5, max_active=30))
    query = "SELECT conversation_id, turn_index, content FROM messages ORDER BY 1, 2"
    with (
        duckdb.connect(str(first), read_only=True) as a,
        duckdb.connect(str(second), read_only=True) as b,
    ):
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_growing_the_count_extends_the_same_plan(db_path):
    generate(GenerateRequest(db=db_path, backend="simulated", count=10, seed=2))
    summary = generate(GenerateRequest(db=db_path, backend="simulated", count=25, seed=2))
    assert summary.complete == 25
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert _one(conn, "SELECT count(DISTINCT plan_id), count(*) FROM conversations") == (1, 25)


def test_fixed_turns(db_path):
    generate(GenerateRequest(db=db_path, backend="simulated", count=20, turns=4))
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert _one(conn, "SELECT count(*) FROM messages") == (20 * 4 * 2,)


def test_tiny_domain_runs_end_to_end(db_path):
    summary = generate(
        GenerateRequest(db=db_path, backend="simulated", count=40, domain=TINY_DOMAIN)
    )
    assert summary.complete == 40
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert _one(conn, "SELECT DISTINCT domain FROM plans") == ("bike_repair",)
        text = " ".join(row[0] for row in conn.execute("SELECT content FROM messages").fetchall())
    assert "bike" in text or "chain" in text or "brake" in text
    assert "anxiety" not in text


def test_scenarios_are_stored_with_the_plan(db_path):
    generate(GenerateRequest(db=db_path, backend="simulated", count=15, seed=4))
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert _one(conn, "SELECT count(*) FROM scenarios") == (15,)
        assert _one(conn, "SELECT count(*) FROM scenarios WHERE len(topic_categories) = 0") == (0,)
        persona = _one(conn, "SELECT persona->>'$.name' FROM scenarios LIMIT 1")[0]
        assert persona
