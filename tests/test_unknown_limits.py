"""`rapport generate` with no limits configured, against the fake provider over real HTTP
through the openai SDK: limits stated only in 429s are adopted, limits stated nowhere are
learned, every conversation completes, and a provider that only answers 429 stops the run
with one line after the no-success bound."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from tests.conftest import rapport_in_process

KEY_ENV = "RAPPORT_UNKNOWN_LIMITS_KEY"
COUNT, TURNS = 8, 2


def _config(path: Path, base_url: str, extra: str = "") -> Path:
    role = (
        f"{{provider: openai, model: fake, base_url: '{base_url}', api_key_env: {KEY_ENV}, "
        f"max_retries: 2, backoff_min_s: 0.01, backoff_max_s: 0.1, max_tokens: 40{extra}}}"
    )
    path.write_text(f"backends:\n  user_sim: {role}\n  assistant: {role}\n")
    return path


def _generate(tmp_path: Path, settings: FakeProviderSettings, extra: str = ""):
    db = tmp_path / "rapport.duckdb"
    with running_fake_provider(settings) as (base_url, state):
        config = _config(tmp_path / "run.yaml", base_url, extra)
        result = rapport_in_process(
            "generate", "--db", str(db), "--count", str(COUNT), "--turns", str(TURNS),
            "--config", str(config), "--quiet",
            env={KEY_ENV: "key"},
        )  # fmt: skip
    return result, db, state


def _statuses(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return dict(
            conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
        )


def _gateway_limits(db: Path) -> tuple[int | None, str | None, int, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(
            "SELECT max(rpm_limit), max(limits_source), sum(rate_limited), sum(failed) "
            "FROM gateway_stats"
        ).fetchone()


# A small bucket (a tenth of a second's worth) so that even a short run meets the limit.
LIMITED = {"rpm": 300, "burst_s": 0.1, "latency_ms": 5.0, "reply_tokens": 20}


@pytest.mark.slow
def test_limits_stated_only_in_429s_are_adopted_and_every_conversation_completes(tmp_path):
    settings = FakeProviderSettings(**LIMITED, limit_headers="on_429")
    result, db, state = _generate(tmp_path, settings)
    assert result.returncode == 0, result.stderr
    assert _statuses(db) == {"complete": COUNT}
    assert state.rate_limited >= 1  # the limit was met, and stated in that 429
    rpm, source, rate_limited, failed = _gateway_limits(db)
    assert (rpm, source) == (300, "stated")
    assert rate_limited >= 1 and failed == 0


@pytest.mark.slow
def test_limits_stated_nowhere_are_learned_and_every_conversation_completes(tmp_path):
    settings = FakeProviderSettings(**LIMITED, limit_headers="never")
    result, db, state = _generate(tmp_path, settings)
    assert result.returncode == 0, result.stderr
    assert _statuses(db) == {"complete": COUNT}
    assert state.rate_limited >= 1
    rpm, source, rate_limited, failed = _gateway_limits(db)
    assert source == "learned" and rpm is not None and rpm > 0
    assert rate_limited >= 1 and failed == 0


def test_attempts_are_stored_per_turn(tmp_path):
    settings = FakeProviderSettings(latency_ms=5.0, reply_tokens=20, rate_limit_first=3)
    result, db, _ = _generate(tmp_path, settings)
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        attempts = conn.execute("SELECT sum(attempts - 1), min(attempts) FROM messages").fetchone()
    assert attempts == (3, 1)  # the three 429s were retries of stored turns


@pytest.mark.slow
def test_a_provider_that_only_answers_429_stops_with_one_line(tmp_path):
    settings = FakeProviderSettings(rate_limit_first=10**9, retry_after_ms=20)
    result, db, state = _generate(tmp_path, settings, extra=", no_success_stop_s: 1")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "429" in lines[0] and "no success" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert state.injected_429 > 3 * COUNT  # far past max_retries: 429s are not failures
    assert _statuses(db).get("failed", 0) == 0  # nothing failed: the run resumes next time


def test_a_backend_spec_carries_settings_after_a_question_mark():
    from rapport.config.backend_spec import parse_backend_spec

    spec = "openai:m@http://127.0.0.1:8000/v1?max_in_flight=4&timeout_s=15"
    settings = parse_backend_spec(spec)
    assert settings.base_url == "http://127.0.0.1:8000/v1"
    assert (settings.max_in_flight, settings.timeout_s) == (4, 15.0)


def test_an_unknown_or_ill_typed_spec_option_is_a_one_line_error(tmp_path):
    for option, culprit in (("max_inflight=4", "max_inflight"), ("max_in_flight=four", "int")):
        result = rapport_in_process(
            "generate", "--db", str(tmp_path / "x.duckdb"), "--count", "1",
            "--backend", f"openai:m@http://127.0.0.1:9/v1?{option}",
        )  # fmt: skip
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert option in lines[0] and culprit in lines[0]
