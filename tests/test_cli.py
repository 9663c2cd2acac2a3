"""The command line as a user runs it: one-line errors, read-only SQL, streaming, stats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapport.store.errors import StoreError
from rapport.store.query import check_read_only
from tests.conftest import TINY_DOMAIN, rapport, rapport_in_process


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def broken_domain(tmp_path: Path) -> Path:
    target = tmp_path / "domain"
    shutil.copytree(TINY_DOMAIN, target)
    return target


@pytest.mark.parametrize(
    ("file", "old", "new", "fragments"),
    [
        (
            "topics.yaml",
            "weight: 0.5\n    subtopics:\n      squeaky",
            "weight: 0.5\n    color: red\n    subtopics:\n      squeaky",
            ("topics.yaml", "categories.brakes", "unknown field color"),
        ),
        (
            "personas.yaml",
            "count: [1, 2]",
            "count: [one, 2]",
            ("personas.yaml", "traits.count[0]", "expected int"),
        ),
        (
            "rubric.yaml",
            "accuracy: 0.6",
            "accuracy: 0.9",
            ("rubric.yaml", "categories", "sum to 1.3"),
        ),
    ],
)
def test_domain_mistakes_are_one_line_errors(broken_domain, db_path, file, old, new, fragments):
    path = broken_domain / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    result = rapport_in_process(
        "generate", "--db", str(db_path), "--count", "3", "--domain", str(broken_domain)
    )
    _assert_one_line_error(result, *fragments)
    assert not db_path.exists()


def test_missing_domain_file_is_a_one_line_error(broken_domain, db_path):
    (broken_domain / "flaws.yaml").unlink()
    result = rapport_in_process(
        "generate", "--db", str(db_path), "--count", "3", "--domain", str(broken_domain)
    )
    _assert_one_line_error(result, "flaws.yaml", "missing file")


def test_missing_run_config_is_a_one_line_error(db_path, tmp_path):
    result = rapport_in_process(
        "generate", "--db", str(db_path), "--count", "3", "--config", str(tmp_path / "nope.yaml")
    )
    _assert_one_line_error(result, "nope.yaml", "missing file")


def test_wrong_type_in_run_config(db_path, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("max_active: lots\n")
    result = rapport_in_process(
        "generate", "--db", str(db_path), "--count", "3", "--config", str(config)
    )
    _assert_one_line_error(result, "run.yaml", "max_active", "expected int")


def test_database_in_missing_folder(tmp_path):
    result = rapport_in_process(
        "generate",
        "--db",
        str(tmp_path / "no" / "such.duckdb"),
        "--count",
        "3",
        "--backend",
        "simulated",
    )
    _assert_one_line_error(result, "does not exist")


def test_not_a_database_file(tmp_path):
    fake = tmp_path / "notes.duckdb"
    fake.write_text("just some text, not a database")
    result = rapport_in_process("stats", "--db", str(fake))
    _assert_one_line_error(result, "notes.duckdb")
    assert fake.read_text() == "just some text, not a database"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "corpus.duckdb"
    result = rapport(
        "generate", "--db", str(db), "--count", "25", "--seed", "9", "--backend", "simulated"
    )
    assert result.returncode == 0, result.stderr
    assert "25/25 complete" in result.stdout
    return db


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE messages",
        "INSERT INTO runs (run_id) VALUES ('x')",
        "ATTACH 'other.duckdb' AS other",
        "COPY (SELECT * FROM messages) TO 'stolen.csv'",
        "SELECT 1; DELETE FROM messages",
        "UPDATE conversations SET status = 'pending'",
        "SET threads = 1",
        "INSTALL httpfs",
    ],
)
def test_sql_refuses_writes(corpus, statement, tmp_path, monkeypatch):
    before = corpus.stat().st_size
    monkeypatch.chdir(tmp_path)  # where COPY or ATTACH would write
    result = rapport_in_process("sql", "--db", str(corpus), statement)
    _assert_one_line_error(result, "refused")
    assert corpus.stat().st_size == before
    assert not (tmp_path / "stolen.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_sql_formats(corpus):
    query = "SELECT status, count(*) AS n FROM conversations GROUP BY status"
    as_json = rapport_in_process("sql", "--db", str(corpus), query, "--format", "json")
    assert json.loads(as_json.stdout) == [{"status": "complete", "n": 25}]
    as_csv = rapport_in_process("sql", "--db", str(corpus), query, "--format", "csv")
    assert as_csv.stdout.splitlines() == ["status,n", "complete,25"]
    as_table = rapport_in_process("sql", "--db", str(corpus), query)
    assert "complete" in as_table.stdout and "25" in as_table.stdout


def test_sql_error_is_one_line(corpus):
    result = rapport_in_process("sql", "--db", str(corpus), "SELECT nope FROM nowhere")
    _assert_one_line_error(result, "query failed")


def test_read_only_check_allows_queries():
    check_read_only("WITH x AS (SELECT 1) SELECT * FROM x")
    check_read_only("EXPLAIN SELECT 1")
    with pytest.raises(StoreError):
        check_read_only("CREATE TABLE t (a INT)")


def test_stats_shows_every_section(corpus):
    result = rapport_in_process("stats", "--db", str(corpus))
    assert result.returncode == 0, result.stderr
    for title in (
        "Conversations by status",
        "Exchanges per conversation",
        "By topic category",
        "By flaw",
        "By backend",
        "Gateways",
        "Errors by kind",
    ):
        assert title in result.stdout
    assert "simulated" in result.stdout


@pytest.mark.slow
def test_rows_are_visible_while_the_run_goes_on(tmp_path):
    db = tmp_path / "live.duckdb"
    config = tmp_path / "slow.yaml"
    config.write_text(
        "backends:\n  user_sim: {provider: simulated, latency_ms: 300}\n"
        "  assistant: {provider: simulated, latency_ms: 300}\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rapport",
            "generate",
            "--db",
            str(db),
            "--count",
            "50",
            "--turns",
            "100",
            "--config",
            str(config),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # 200 turns of 300 ms each: a minute, far longer than the checks below on a busy machine
    try:
        seen_while_running = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None and not seen_while_running:
            if db.exists():
                result = rapport(
                    "sql", "--db", str(db), "SELECT count(*) AS n FROM messages", "--format", "json"
                )
                if result.returncode == 0:
                    seen_while_running = json.loads(result.stdout)[0]["n"]
            time.sleep(0.1)
        assert 0 < seen_while_running < 50 * 100 * 2
        # A second writer on the same database is refused while the first one runs.
        second = rapport(
            "generate", "--db", str(db), "--count", "50", "--turns", "100", "--backend", "simulated"
        )
        assert process.poll() is None, "the first run ended before the second one started"
        _assert_one_line_error(second, "another rapport run")
    finally:
        process.kill()
        process.wait(timeout=60)
