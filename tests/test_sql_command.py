"""`rapport sql` as a user types it: refusals named right, queries from an argument, stdin or a
file, and results of any size printed without holding them in memory."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from rapport.config.constants import SQL_TABLE_ROWS
from rapport.store.query import query, query_batches
from tests.conftest import rapport_in_process
from tests.test_bad_input import assert_one_line_error

MORE_THAN_A_TABLE = SQL_TABLE_ROWS + 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("sql") / "corpus.duckdb"
    outcome = rapport_in_process(
        "generate", "--db", str(db), "--count", "3", "--turns", "2", "--backend", "simulated"
    )
    assert outcome.returncode == 0, outcome
    return db


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("INSTALL httpfs", "an INSTALL statement"),
        ("LOAD httpfs", "a LOAD statement"),
        ("INSERT INTO runs (run_id) VALUES ('x')", "an INSERT statement"),
        ("UPDATE conversations SET status = 'pending'", "an UPDATE statement"),
        ("DROP TABLE messages", "a DROP statement"),
    ],
)
def test_a_refusal_names_the_statement_as_written(corpus, statement, named):
    outcome = rapport_in_process("sql", "--db", str(corpus), statement)
    assert_one_line_error(outcome, f"this is {named}")


def test_a_query_starting_with_a_comment_is_read_after_double_dash(corpus):
    outcome = rapport_in_process(
        "sql", "--db", str(corpus), "--format", "csv", "--", "-- how many?\nSELECT 7 AS n"
    )
    assert outcome.returncode == 0, outcome
    assert outcome.stdout.splitlines() == ["n", "7"]


def test_a_dash_reads_the_query_from_stdin(corpus):
    outcome = rapport_in_process(
        "sql", "--db", str(corpus), "--format", "csv", "-", stdin="-- piped\nSELECT 8 AS n\n"
    )
    assert outcome.returncode == 0, outcome
    assert outcome.stdout.splitlines() == ["n", "8"]


def test_file_reads_the_query_from_a_file(corpus, tmp_path):
    script = tmp_path / "count.sql"
    script.write_text("-- every conversation\nSELECT count(*) AS n FROM conversations;\n")
    outcome = rapport_in_process(
        "sql", "--db", str(corpus), "--format", "json", "--file", str(script)
    )
    assert outcome.returncode == 0, outcome
    assert json.loads(outcome.stdout) == [{"n": 3}]


def test_a_query_given_twice_or_not_at_all_is_one_line(corpus, tmp_path):
    script = tmp_path / "q.sql"
    script.write_text("SELECT 1")
    assert_one_line_error(rapport_in_process("sql", "--db", str(corpus)), "--file")
    both = rapport_in_process("sql", "--db", str(corpus), "--file", str(script), "SELECT 2")
    assert_one_line_error(both, "--file")


def test_a_query_file_that_is_not_utf8_is_one_line(corpus, tmp_path):
    script = tmp_path / "latin1.sql"
    script.write_bytes(b"SELECT 'caf\xe9'")
    outcome = rapport_in_process("sql", "--db", str(corpus), "--file", str(script))
    assert_one_line_error(outcome, "latin1.sql", "not UTF-8")


@pytest.mark.slow
def test_a_table_is_cut_at_its_default_limit_and_says_so(corpus):
    outcome = rapport_in_process(
        "sql", "--db", str(corpus), f"SELECT range AS i FROM range({MORE_THAN_A_TABLE})"
    )
    assert outcome.returncode == 0, outcome
    assert (
        f"{SQL_TABLE_ROWS - 1:,}" in outcome.stdout and f"{SQL_TABLE_ROWS:,}" not in outcome.stdout
    )
    assert f"rows cut at --limit {SQL_TABLE_ROWS:,}" in outcome.stderr


def test_limit_cuts_csv_and_says_so_on_stderr(corpus):
    outcome = rapport_in_process(
        "sql", "--db", str(corpus), "--format", "csv", "--limit", "2", "SELECT * FROM range(5)"
    )
    assert outcome.returncode == 0, outcome
    assert outcome.stdout.splitlines() == ["range", "0", "1"]
    assert "rows cut at --limit 2" in outcome.stderr


def test_csv_and_json_stream_every_row_past_the_table_limit(corpus):
    statement = f"SELECT range AS i FROM range({MORE_THAN_A_TABLE})"
    as_csv = rapport_in_process("sql", "--db", str(corpus), "--format", "csv", statement)
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["i"] and len(rows) == MORE_THAN_A_TABLE + 1
    as_json = rapport_in_process("sql", "--db", str(corpus), "--format", "json", statement)
    assert [record["i"] for record in json.loads(as_json.stdout)] == list(range(MORE_THAN_A_TABLE))
    assert "cut" not in as_csv.stderr + as_json.stderr


def test_an_empty_result_is_an_empty_json_array_and_a_header(corpus):
    statement = "SELECT status FROM conversations WHERE false"
    as_json = rapport_in_process("sql", "--db", str(corpus), "--format", "json", statement)
    assert json.loads(as_json.stdout) == []
    as_csv = rapport_in_process("sql", "--db", str(corpus), "--format", "csv", statement)
    assert as_csv.stdout.splitlines() == ["status"]


def test_rows_come_from_duckdb_a_batch_at_a_time(corpus):
    batches = list(query_batches(corpus, "SELECT * FROM range(25)", batch_rows=10))
    assert [len(batch.rows) for batch in batches] == [10, 10, 5]
    assert not any(batch.truncated for batch in batches)


def test_a_limit_stops_fetching_and_marks_the_result_truncated(corpus):
    result = query(corpus, "SELECT * FROM range(100000000)", limit=3)
    assert result.rows == ((0,), (1,), (2,)) and result.truncated
    assert not query(corpus, "SELECT * FROM range(3)", limit=3).truncated
