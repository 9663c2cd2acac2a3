"""Ctrl-C and SIGTERM as a user sends them to a running `rapport generate`: one line saying how
far it got, exit 130 / 143, the run row `interrupted`, and the same command finishes the corpus
with nothing lost or duplicated. A provider that goes down leaves no conversation `running`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from rapport.cli.exit_codes import INTERRUPTED, NOTHING_DONE, OK, TERMINATED
from rapport.stages.generate import GenerateRequest, generate
from rapport.store.database import connect
from tests.conftest import rapport

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README

COUNT, TURNS, SEED = 40, 3, 5
ARGS = ["--count", str(COUNT), "--turns", str(TURNS), "--seed", str(SEED), "--quiet"]


def _messages(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = connect(db, read_only=True)
    except duckdb.Error:
        return 0  # the run holds the file at this instant
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except duckdb.Error:
        return 0
    finally:
        conn.close()


def _signal_once_turns_are_stored(db: Path, signum: int) -> subprocess.CompletedProcess[str]:
    """Start a slow run, send `signum` once some turns are stored, and wait for its exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rapport", "generate", "--db", str(db), *ARGS,
         "--backend", "simulated:latency_ms=200", "--max-active", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _messages(db) == 0:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the run stored nothing"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _transcripts(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(
            "SELECT conversation_id, turn_index, role, content FROM messages ORDER BY 1, 2"
        ).fetchall()


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, INTERRUPTED), (signal.SIGTERM, TERMINATED)]
)
def test_a_signal_stops_generate_with_one_line_and_the_run_resumes(tmp_path, signum, code):
    db = tmp_path / "stopped.duckdb"
    stopped = _signal_once_turns_are_stored(db, signum)
    assert stopped.returncode == code, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stopped.stderr
    assert lines[0].startswith("interrupted: ") and lines[0].endswith(
        f" of {COUNT} conversations complete, run the same command again to resume"
    )
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
        )
    assert "running" not in statuses and statuses.get("complete", 0) < COUNT

    resumed = rapport("generate", "--db", str(db), *ARGS, "--backend", "simulated")
    assert resumed.returncode == OK, resumed.stderr
    reference = tmp_path / "reference.duckdb"
    generate(
        GenerateRequest(db=reference, count=COUNT, turns=TURNS, seed=SEED, backend="simulated")
    )
    assert _transcripts(db) == _transcripts(reference)  # nothing lost, nothing twice
    assert len(_transcripts(db)) == COUNT * TURNS * 2


def test_a_provider_that_goes_down_leaves_no_conversation_running(tmp_path):
    db = tmp_path / "down.duckdb"
    result = rapport(
        "generate", "--db", str(db), "--count", "8", "--turns", "2",
        "--user-backend", "simulated",  # the user speaks; the assistant's provider is down
        "--assistant-backend", "openai:some-model@http://127.0.0.1:9/v1",
        env={"OPENAI_API_KEY": "sk-x"},
    )  # fmt: skip
    assert result.returncode == NOTHING_DONE, result.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        stopped = conn.execute(
            "SELECT status, error FROM conversations WHERE status <> 'pending'"
        ).fetchall()
        kinds = conn.execute("SELECT DISTINCT kind FROM errors").fetchall()
        runs = conn.execute("SELECT status FROM runs").fetchall()
    assert stopped, "no conversation had started"
    for status, error in stopped:
        assert status == "interrupted" and "cannot reach the provider" in error
    assert kinds == [("connection",)]  # the reason, not a closed stream
    assert runs == [("interrupted",)]
