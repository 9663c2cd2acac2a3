"""Local servers as they are (issue 25), through the real CLI and the real openai SDK: a slow
one-slot server (llama-cpp-python's own, SmolLM2) never fails a conversation and is never
probed into a timeout; a server that times out every request stops the run with one line, as
one that answers only 429 does. (Virtual-time figures: tests/test_adaptive_limits.py.)"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rapport.config.constants import TIMEOUT_RAISE_MAX
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from tests.conftest import rapport, rapport_in_process
from tests.smollm2_server import smollm2_server

KEY_ENV = "RAPPORT_LOCAL_SERVERS_KEY"


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_a_server_that_times_out_every_request_stops_with_one_line(tmp_path):
    """Every request hangs past its timeout: retried as backpressure (far past max_retries),
    the timeout raised to its bound, then one line and exit 4 after no_success_stop_s."""
    db = tmp_path / "hung.duckdb"
    settings = FakeProviderSettings(fault_hang=1.0, hang_s=30.0)
    with running_fake_provider(settings) as (base_url, state):
        role = (
            f"{{provider: openai, model: fake, base_url: '{base_url}', api_key_env: {KEY_ENV}, "
            "max_retries: 1, backoff_min_s: 0.01, backoff_max_s: 0.05, timeout_s: 0.1, "
            "no_success_stop_s: 3}"
        )
        config = tmp_path / "run.yaml"
        config.write_text(f"backends:\n  user_sim: {role}\n  assistant: {role}\n")
        result = rapport_in_process(
            "generate", "--db", str(db), "--count", "4", "--turns", "2",
            "--config", str(config), "--quiet", env={KEY_ENV: "key"},
        )  # fmt: skip
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "timed out" in lines[0] and "no success" in lines[0], lines
    assert "429" not in lines[0] and "Traceback" not in result.stderr
    assert state.hangs > 1 + 1  # past max_retries (1): a timeout here is backpressure
    assert _rows(db, "SELECT count(*) FROM conversations WHERE status = 'failed'") == [(0,)]
    assert _rows(db, "SELECT DISTINCT kind FROM errors") == [("timeout",)]  # why they stopped
    [(timeouts, backpressure, effective, notice)] = _rows(
        db,
        "SELECT timeouts, backpressure_timeouts, effective_timeout_s, timeout_notice "
        "FROM gateway_stats",
    )
    assert timeouts == backpressure == state.hangs
    assert effective == pytest.approx(0.1 * TIMEOUT_RAISE_MAX)  # the bound
    assert "timeout_s 0.1 s" in notice and f"{0.1 * TIMEOUT_RAISE_MAX:g} s" in notice
    stats = rapport_in_process("stats", "--db", str(db))
    assert stats.returncode == 0, stats.stderr
    shown = " ".join(stats.stdout.split())
    assert "Gateway limits and timeouts" in shown and "backpressure_timeouts" in shown
    assert "Timeouts raised to fit one request" in shown
    assert "openai:fake: timeout_s 0.1 s is shorter than one request" in shown


COUNT, TURNS = 8, 2
MAX_RETRIES_SEEN = 2  # the bar: 8/8 complete with at most 2 retries


@pytest.mark.slow
@pytest.mark.serial  # a real model server's latency is what it measures
def test_a_slow_one_slot_server_completes_every_conversation_with_few_retries(tmp_path):
    """The issue's case: llama-cpp-python's server (one request at a time, n_ctx 4096) as the
    assistant, the simulated user, no limits, timeout_s 12, max_tokens 256."""
    db = tmp_path / "local.duckdb"
    options = ("--n_ctx", "4096")
    with smollm2_server(tmp_path / "server.log", options) as base_url:
        config = tmp_path / "run.yaml"
        config.write_text(
            "backends:\n  user_sim: {provider: simulated}\n"
            f"  assistant: {{provider: openai, model: smollm2, base_url: '{base_url}', "
            "timeout_s: 12, max_tokens: 256}\n"
        )
        result = rapport(
            "generate", "--db", str(db), "--count", str(COUNT), "--turns", str(TURNS),
            "--config", str(config), "--quiet", timeout=1800,
        )  # fmt: skip
    figures = _rows(
        db,
        "SELECT requests, retries, timeouts, backpressure_timeouts, effective_timeout_s, "
        "max_in_flight, round(latency_p50_ms), round(latency_p99_ms), timeout_notice "
        "FROM gateway_stats WHERE gateway LIKE 'openai:%'",
    )
    print("assistant gateway:", figures)  # (shown with -s: the figures of the run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _rows(db, "SELECT status, count(*) FROM conversations GROUP BY 1") == [
        ("complete", COUNT)
    ]
    [(_, retries, timeouts, backpressure, _, in_flight, *_)] = figures
    assert retries <= MAX_RETRIES_SEEN, figures
    assert timeouts == backpressure  # no timeout counted as a failure
    assert in_flight == 1  # a one-slot server settles at one
    stats = rapport("stats", "--db", str(db))
    assert stats.returncode == 0 and "backpressure_timeouts" in stats.stdout
