"""`rapport generate --estimate` and the estimate stored with each run: no call, nothing
written, tokens within 15 % of what the simulated backend then reports, and `stats` showing
estimate vs actual."""

from __future__ import annotations

from pathlib import Path

import duckdb
import msgspec
import pytest

from rapport.engine.budget import BudgetReached
from rapport.engine.types import ChatMessage
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.estimate import cached_tokens, estimate_run, shared_prefix_chars
from rapport.stages.generate import GenerateRequest, generate, generate_settings
from tests.conftest import rapport_in_process

KEY_ENV = "RAPPORT_ESTIMATE_KEY"


def _fake_config(path: Path, base_url: str) -> Path:
    role = (
        f"{{provider: openai, model: gpt-4o-mini, base_url: '{base_url}', "
        f"api_key_env: {KEY_ENV}, max_tokens: 40, rpm: 600}}"
    )
    path.write_text(
        f"backends:\n  user_sim: {role}\n  assistant: {role}\n"
        "prices:\n  gpt-4o-mini: {input: 1000.0, output: 1000.0}\n"
    )
    return path


def _stored(db: Path, run_id: str) -> tuple[int, int, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(
            "SELECT count(*), sum(prompt_tokens), sum(completion_tokens) FROM messages "
            "WHERE run_id = ?",
            [run_id],
        ).fetchone()


def test_estimate_calls_no_model_and_creates_no_database(tmp_path):
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings()) as (url, state):
        config = _fake_config(tmp_path / "run.yaml", url)
        result = rapport_in_process(
            "generate", "--db", str(db), "--count", "30", "--turns", "4",
            "--config", str(config), "--estimate", env={KEY_ENV: "sk-estimate"},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert state.requests == 0
    assert not db.exists() and list(tmp_path.iterdir()) == [config]
    assert "30 conversations to play" in result.stdout
    assert "240" in result.stdout  # 30 conversations x 4 exchanges x 2 roles
    assert "wall time: at least" in result.stdout  # rpm 600: 240 requests take 24 s


def test_estimate_leaves_an_existing_database_untouched(tmp_path):
    db = tmp_path / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=3, turns=2, backend="simulated"))
    before = db.read_bytes()
    result = rapport_in_process(
        "generate", "--db", str(db), "--count", "9", "--turns", "2", "--backend", "simulated",
        "--estimate",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert db.read_bytes() == before
    assert "6 conversations to play" in result.stdout  # the 3 complete ones cost nothing more


def test_estimated_tokens_are_within_15_percent_on_the_simulated_backend(tmp_path):
    """With a corpus to measure reply lengths from, the estimate of the next run's input and
    output tokens is within 15 % of what the simulated backend reports."""
    db = tmp_path / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=15, backend="simulated", max_active=50))
    request = GenerateRequest(db=db, count=75, backend="simulated", max_active=50)
    estimate = estimate_run(generate_settings(request), request.count, db)
    summary = generate(request)
    requests, input_tokens, output_tokens = _stored(db, summary.run_id)
    assert estimate.conversations == 60
    assert estimate.requests == pytest.approx(requests, rel=0.15)
    assert estimate.input_tokens == pytest.approx(input_tokens, rel=0.15)
    assert estimate.output_tokens == pytest.approx(output_tokens, rel=0.15)
    assert {r.reply_source for r in estimate.roles} == {"measured in the corpus"}


def test_a_resumed_run_is_estimated_for_what_remains(tmp_path):
    """After a budget stop, the estimate counts the calls still to make, not the whole plan."""
    db = tmp_path / "corpus.duckdb"
    env = {KEY_ENV: "sk-estimate"}
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, state):
        config = _fake_config(tmp_path / "run.yaml", url)
        request = GenerateRequest(db=db, count=4, turns=3, max_active=2, config=config)
        with pytest.raises(BudgetReached):
            generate(msgspec.structs.replace(request, max_cost=8.0), environ=env)
        made = state.completed
        estimate = estimate_run(generate_settings(request), request.count, db)
        summary = generate(request, environ=env)
    assert 0 < made < 4 * 3 * 2
    assert estimate.requests == state.completed - made == _stored(db, summary.run_id)[0]


def test_stats_shows_each_runs_estimate_beside_what_it_took(tmp_path):
    db = tmp_path / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=10, backend="simulated", max_active=20))
    summary = generate(GenerateRequest(db=db, count=40, backend="simulated", max_active=20))
    with duckdb.connect(str(db), read_only=True) as conn:
        row = conn.execute(
            "SELECT estimated_requests, requests, estimated_input_tokens, input_tokens, "
            "estimated_output_tokens, output_tokens FROM estimate_vs_actual WHERE run_id = ?",
            [summary.run_id],
        ).fetchone()
    est_requests, requests, est_input, actual_input, est_output, actual_output = row
    assert est_requests == requests == _stored(db, summary.run_id)[0]
    assert est_input == pytest.approx(actual_input, rel=0.15)
    assert est_output == pytest.approx(actual_output, rel=0.15)
    result = rapport_in_process("stats", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "Estimate vs actual" in result.stdout
    assert summary.run_id in result.stdout and f"{requests:,}" in result.stdout


def test_openai_caches_a_shared_prefix_from_1024_tokens_in_128_token_steps():
    assert cached_tokens("openai", 2000.0, 1000.0) == (0.0, 0.0)
    assert cached_tokens("openai", 2000.0, 1300.0) == (1280.0, 0.0)
    assert cached_tokens("openai", 900.0, 900.0) == (0.0, 0.0)


def test_anthropic_reads_the_previous_prefix_and_writes_the_new_suffix():
    assert cached_tokens("anthropic", 3000.0, 2000.0) == (2000.0, 1000.0)
    assert cached_tokens("anthropic", 3000.0, 500.0) == (0.0, 3000.0)
    assert cached_tokens("anthropic", 800.0, 700.0) == (0.0, 0.0)
    assert cached_tokens("simulated", 3000.0, 2000.0) == (0.0, 0.0)


def test_shared_prefix_counts_whole_messages_then_the_common_start_of_the_first_change():
    before = [ChatMessage("system", "persona"), ChatMessage("user", "hello there")]
    after = [ChatMessage("system", "persona"), ChatMessage("user", "hello you"), before[1]]
    assert shared_prefix_chars(before, after) == len("persona") + len("hello ")
    assert shared_prefix_chars(before, [*before, ChatMessage("user", "x")]) == 7 + 11


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_caching_lowers_the_estimated_cost_and_cache_false_turns_it_off(tmp_path, provider):
    """Prefix-stable prompts make long conversations mostly cache reads at either API's cache
    prices; with `cache: false` nothing is read from a cache and the two costs agree."""
    model = "gpt-4o-mini" if provider == "openai" else "claude-sonnet-4-5"
    config = tmp_path / "run.yaml"
    request = GenerateRequest(db=tmp_path / "none.duckdb", count=10, turns=12, config=config)
    costs = {}
    for cache in (True, False):
        role = f"{{provider: {provider}, model: {model}}}"
        config.write_text(
            f"cache: {str(cache).lower()}\nbackends:\n  user_sim: {role}\n  assistant: {role}\n"
        )
        costs[cache] = estimate_run(generate_settings(request), request.count, request.db)
    on, off = costs[True], costs[False]
    assert on.requests == off.requests == 10 * 12 * 2
    assert on.input_tokens == off.input_tokens
    assert on.cache_read_tokens > 0.7 * on.input_tokens
    assert on.cost_usd < 0.7 * on.cost_uncached_usd
    assert off.cache_read_tokens == off.cache_write_tokens == 0
    assert off.cost_usd == pytest.approx(off.cost_uncached_usd)
    assert not request.db.exists()
