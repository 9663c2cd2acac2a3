"""Resume: a run killed with SIGKILL at any moment continues where it stopped, exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from rapport.stages.generate import GenerateRequest, generate
from rapport.store.database import connect

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README

COUNT = 150
SEED = 3


def _messages(db: Path) -> int:
    conn = connect(db, read_only=True)
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except duckdb.CatalogException:
        return 0
    finally:
        conn.close()


def _start(db: Path, config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rapport",
            "generate",
            "--db",
            str(db),
            "--count",
            str(COUNT),
            "--seed",
            str(SEED),
            "--config",
            str(config),
            "--max-active",
            "40",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_after_more_than(db: Path, process: subprocess.Popen[bytes], stored: int) -> int:
    """SIGKILL the run as soon as a commit has taken the file past `stored` rows.

    The kill point is relative to what is already stored, never an absolute row count: how many
    rows one commit carries is the writer's business (a batch may hold thousands), so a fixed
    threshold races the batch size. The run is slowed by its backend's latency and commits small
    batches (see the config), so it is always mid-corpus when the poll sees a new commit."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        if db.exists() and _messages(db) > stored:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return _messages(db)
        time.sleep(0.05)
    raise AssertionError("the run never stored anything new")


def test_sigkill_then_rerun_gives_exactly_the_uninterrupted_corpus(tmp_path):
    config = tmp_path / "slow.yaml"
    config.write_text(
        "backends:\n  user_sim: {provider: simulated, latency_ms: 15}\n"
        "  assistant: {provider: simulated, latency_ms: 15}\n"
        "store: {flush_rows: 50, flush_interval_s: 0.05}\n"
    )
    db = tmp_path / "killed.duckdb"
    stored_at_kills = [0]
    for _ in range(2):  # each run is killed once it has added rows to what the last one left
        stored_at_kills.append(_kill_after_more_than(db, _start(db, config), stored_at_kills[-1]))
    with duckdb.connect(str(db), read_only=True) as conn:
        unfinished = conn.execute(
            "SELECT count(*) FROM conversations WHERE status <> 'complete'"
        ).fetchone()[0]
    assert unfinished > 0, "kill happened after the run finished"
    assert 0 < stored_at_kills[1] < stored_at_kills[2]

    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "rapport",
            "generate",
            "--db",
            str(db),
            "--count",
            str(COUNT),
            "--seed",
            str(SEED),
            "--backend",
            "simulated",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr

    reference = tmp_path / "reference.duckdb"
    generate(GenerateRequest(db=reference, backend="simulated", count=COUNT, seed=SEED))
    query = "SELECT conversation_id, turn_index, role, content FROM messages ORDER BY 1, 2"
    with (
        duckdb.connect(str(db), read_only=True) as resumed,
        duckdb.connect(str(reference), read_only=True) as uninterrupted,
    ):
        assert resumed.execute(query).fetchall() == uninterrupted.execute(query).fetchall()
        assert resumed.execute(
            "SELECT count(*) FROM conversations WHERE status = 'complete'"
        ).fetchone() == (COUNT,)
        runs = resumed.execute("SELECT status, count(*) FROM runs GROUP BY 1 ORDER BY 1").fetchall()
        assert runs == [("finished", 1), ("interrupted", 2)]
