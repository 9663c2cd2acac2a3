"""`store.transaction`: the one way a multi-statement write commits together or not at all."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rapport.store.transaction import transaction


def _table(path: Path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    return conn


def _keys(conn: duckdb.DuckDBPyConnection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT k FROM t ORDER BY k").fetchall()]


def test_a_block_that_ends_commits_every_statement(tmp_path: Path) -> None:
    conn = _table(tmp_path / "t.duckdb")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (2)")
    conn.close()
    with duckdb.connect(str(tmp_path / "t.duckdb")) as reopened:  # committed: on disk
        assert _keys(reopened) == [1, 2]


def test_a_block_that_raises_keeps_nothing_and_raises_its_own_error(tmp_path: Path) -> None:
    conn = _table(tmp_path / "t.duckdb")
    with pytest.raises(ValueError, match="the block's"), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        raise ValueError("the block's")
    assert _keys(conn) == []
    with transaction(conn):  # the connection is usable again: no transaction left open
        conn.execute("INSERT INTO t VALUES (3)")
    assert _keys(conn) == [3]


def test_a_failed_statement_rolls_back_the_statements_before_it(tmp_path: Path) -> None:
    conn = _table(tmp_path / "t.duckdb")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(duckdb.ConstraintException), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("INSERT INTO t VALUES (1)")  # a duplicate key: the statement fails
    assert _keys(conn) == [1]


def test_an_interrupt_inside_the_block_rolls_back(tmp_path: Path) -> None:
    conn = _table(tmp_path / "t.duckdb")
    with pytest.raises(KeyboardInterrupt), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        raise KeyboardInterrupt
    assert _keys(conn) == []
