"""Errors and figures a person can read: a timed-out turn's `errors` row names the turn and the
role that failed; `rapport stats` prints latencies as whole milliseconds (never `1.163e+04`),
in tables that wrap instead of cutting figures to `1.16…` when piped (80 columns)."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest
from rich.console import Console

from rapport.cli.render import _cell, as_table, print_table
from rapport.stages.generate import GenerateRequest, generate
from rapport.store.stats import corpus_stats
from tests.conftest import TINY_DOMAIN
from tests.llama_like_server import ServerSettings, llama_like_server

PIPE_COLUMNS = 80  # rich's width for a pipe when COLUMNS is not set; a small terminal's


def _rows(db, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_a_timed_out_turn_is_recorded_with_its_turn_index_and_role(db_path, tmp_path):
    """The user simulator's opening (turn 0) is answered; the assistant's reply (turn 1) hangs."""
    config = tmp_path / "run.yaml"
    with llama_like_server(ServerSettings(hang_from=2)) as (base_url, _log):
        backend = (
            f"    provider: openai\n    model: m\n    base_url: {base_url}\n"
            "    timeout_s: 0.5\n    max_retries: 0\n"
            "    max_in_flight: 1\n"  # configured: a timeout fails the turn (learned: backpressure)
        )
        config.write_text(
            f"domain: {TINY_DOMAIN}\nbackends:\n  user_sim:\n{backend}  assistant:\n{backend}"
        )
        summary = generate(GenerateRequest(db=db_path, count=1, turns=2, config=config))
    assert summary.failed == 1
    assert _rows(db_path, "SELECT kind, turn_index, role FROM errors") == [
        ("timeout", 1, "assistant")
    ]


def test_figures_are_never_in_scientific_notation():
    assert _cell(11630.4) == "11,630"
    assert _cell(11630) == "11,630"
    assert _cell(0.8125) == "0.8125"
    assert "e" not in _cell(123456789.5)


def _slow_server_corpus(db) -> None:
    """A corpus whose stored latencies are a slow local server's (11.6 s, p99 58.5 s)."""
    generate(GenerateRequest(db=db, count=3, turns=2, backend="simulated", domain=TINY_DOMAIN))
    with duckdb.connect(str(db)) as conn:
        conn.execute("UPDATE messages SET latency_ms = 11630.4")
        conn.execute("UPDATE gateway_stats SET latency_p50_ms = 11630.4, latency_p99_ms = 58512.9")


@pytest.mark.slow
def test_piped_stats_show_latencies_as_whole_milliseconds_and_cut_nothing(db_path):
    _slow_server_corpus(db_path)
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    piped = subprocess.run(
        [sys.executable, "-m", "rapport", "stats", "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert piped.returncode == 0, piped.stderr
    out = piped.stdout
    assert "e+0" not in out and "…" not in out
    rows = out.splitlines()
    assert any(
        "│ assistant │ simulated" in row and row.count(" 11,630 ") == 3 for row in rows
    )  # mean, p50 and p99, whole, on the assistant's own line
    assert any("│ 11,630 │ 58,513 │" in row for row in rows)  # the gateway's p50 and p99


def test_stats_in_a_narrow_terminal_fold_text_but_keep_figures_whole(db_path):
    _slow_server_corpus(db_path)
    console = Console(record=True, width=PIPE_COLUMNS, force_terminal=True, color_system=None)
    for section in corpus_stats(db_path):
        print_table(as_table(section.result, title=section.title), console)
    out = console.export_text()
    assert "…" not in out and "e+0" not in out
    assert max(len(line) for line in out.splitlines()) <= PIPE_COLUMNS
    assert "│ 11,630 │ 58,513 │" in out
