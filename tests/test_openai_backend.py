"""The openai backend over real HTTP, through the official SDK, against a local aiohttp server."""

from __future__ import annotations

import anyio
import duckdb
import pytest

from rapport.config.errors import ConfigError
from rapport.engine.backends.http_errors import retry_after_seconds
from rapport.engine.backends.openai_backend import OpenAIBackend
from rapport.engine.errors import TurnFailed
from rapport.engine.gateway import Gateway
from rapport.engine.types import ChatMessage, CompletionParams
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.generate import GenerateRequest, generate
from tests.clocks import RecordingClock

PARAMS = CompletionParams(max_tokens=64, temperature=0.5)
HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there")]
SECRET = "sk-test-4f9a1c77e2b0d3"


def _complete(base_url: str, max_retries: int = 3, clock: RecordingClock | None = None):
    backend = OpenAIBackend(model="fake-model", api_key=SECRET, base_url=base_url, timeout_s=10)
    gateway = Gateway(
        backend, max_retries=max_retries, backoff_min_s=0.01, backoff_max_s=0.05, clock=clock
    )

    async def go():
        try:
            return await gateway.complete(HELLO, PARAMS), gateway.stats
        finally:
            await gateway.aclose()

    return anyio.run(go)


def test_completion_over_http_reports_text_usage_latency_and_model():
    with running_fake_provider() as (base_url, state):
        completion, stats = _complete(base_url)
    assert completion.text and completion.model == "fake-model"
    assert completion.prompt_tokens == 5 and completion.completion_tokens == 60
    assert completion.latency_s > 0
    assert state.authorization == {f"Bearer {SECRET}"}
    assert stats.requests == 1 and stats.retries == 0


def test_rate_limit_is_retried_after_the_providers_wait():
    settings = FakeProviderSettings(rate_limit_first=2, retry_after_ms=120)
    clock = RecordingClock()
    with running_fake_provider(settings) as (base_url, state):
        completion, stats = _complete(base_url, clock=clock)
    assert completion.text
    assert state.injected_429 == 2 and stats.rate_limited == 2 and stats.retries == 2
    # Each retry waited what retry-after-ms asked, plus at most backoff_min_s of jitter.
    assert len(clock.sleeps) == 2
    assert all(0.12 <= wait <= 0.12 + 0.01 for wait in clock.sleeps), clock.sleeps


def test_server_errors_and_malformed_bodies_are_retried():
    settings = FakeProviderSettings(server_error_first=1, malformed_first=1)
    with running_fake_provider(settings) as (base_url, state):
        completion, stats = _complete(base_url)
    assert completion.text
    assert state.server_errors == 1 and state.malformed == 1 and stats.retries == 2


def test_retries_run_out_into_a_turn_failure():
    settings = FakeProviderSettings(server_error_first=10)
    with running_fake_provider(settings) as (base_url, _), pytest.raises(TurnFailed) as caught:
        _complete(base_url, max_retries=2)
    assert caught.value.kind == "http_500" and caught.value.attempts == 3


def test_retry_after_headers():
    assert retry_after_seconds({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert retry_after_seconds({"retry-after": "3"}) == pytest.approx(3.0)
    assert retry_after_seconds({}) is None


def _run_yaml(tmp_path, base_url: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"""
backends:
  user_sim:
    provider: openai
    model: fake-user
    base_url: {base_url}
    api_key_env: RAPPORT_TEST_KEY
    max_retries: 4
  assistant:
    provider: openai
    model: fake-coach
    base_url: {base_url}
    api_key_env: RAPPORT_TEST_KEY
    rpm: 6000
    tpm: 2000000
"""
    )
    return path


@pytest.mark.slow
def test_generate_with_openai_backends_over_http(tmp_path, db_path):
    settings = FakeProviderSettings(rate_limit_first=3, retry_after_ms=20)
    with running_fake_provider(settings) as (base_url, state):
        config = _run_yaml(tmp_path, base_url)
        summary = generate(
            GenerateRequest(db=db_path, count=12, turns=3, config=config),
            environ={"RAPPORT_TEST_KEY": SECRET},
        )
    assert summary.complete == 12
    assert (
        summary.user_backend == "openai:fake-user"
        and summary.assistant_backend == "openai:fake-coach"
    )
    assert state.models == {"fake-user", "fake-coach"}
    assert state.completed == 12 * 3 * 2
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (72,)
        models = conn.execute("SELECT DISTINCT role, model FROM messages ORDER BY 1").fetchall()
        assert models == [("assistant", "fake-coach"), ("user", "fake-user")]
    assert SECRET.encode() not in db_path.read_bytes()


def test_missing_api_key_fails_before_any_work(tmp_path, db_path):
    config = _run_yaml(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError) as caught:
        generate(GenerateRequest(db=db_path, count=2, config=config), environ={})
    assert "RAPPORT_TEST_KEY is not set" in str(caught.value)
    assert not db_path.exists()
