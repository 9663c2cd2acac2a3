"""Prompt-cache usage as each API reports it, parsed through the real SDKs (OpenAI's
`prompt_tokens_details.cached_tokens`, Anthropic's `cache_creation_input_tokens` /
`cache_read_input_tokens`); a server that refuses `prompt_cache_key` is asked without it from
then on; the gateway prices each call (cache tokens at the cache prices); and the cost and cache
tokens of every message land in DuckDB, summed per conversation, per role and per gateway."""

from __future__ import annotations

from pathlib import Path

import anyio
import duckdb
import pytest

from rapport.config.prices import load_prices, usage_cost
from rapport.engine.backends.anthropic_backend import AnthropicBackend
from rapport.engine.backends.openai_backend import OpenAIBackend
from rapport.engine.gateway import Gateway
from rapport.engine.types import ChatMessage, CompletionParams
from rapport.stages.generate import GenerateRequest, generate
from tests.conftest import TINY_DOMAIN, rapport_in_process
from tests.prompt_cache_server import CacheServerState, cache_server

HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there")]
CACHED = CompletionParams(max_tokens=32, temperature=0.0, cache_key="s1:user")
PRICES = load_prices()


def _call(backend, params=CACHED, calls: int = 1):
    gateway = Gateway(backend, price=PRICES.price_for(backend.model))

    async def go():
        try:
            return [await gateway.complete(HELLO, params) for _ in range(calls)], gateway.stats
        finally:
            await gateway.aclose()

    return anyio.run(go)


def _openai(url: str, model: str = "gpt-4o-mini") -> OpenAIBackend:
    return OpenAIBackend(model=model, api_key="k", base_url=f"{url}/v1", timeout_s=10)


def _anthropic(url: str, model: str = "claude-haiku-4-5") -> AnthropicBackend:
    return AnthropicBackend(model=model, api_key="k", base_url=url, timeout_s=10)


def test_openai_cached_tokens_are_cache_reads_priced_at_the_cache_price():
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 10,
        "total_tokens": 2010,
        "prompt_tokens_details": {"cached_tokens": 1536},
    }
    with cache_server(CacheServerState(usage=usage)) as (url, state):
        (completion,), stats = _call(_openai(url))
    assert state.openai_bodies[0]["prompt_cache_key"] == "s1:user"
    assert (completion.prompt_tokens, completion.completion_tokens) == (2000, 10)
    assert (completion.cache_read_tokens, completion.cache_write_tokens) == (1536, 0)
    price = PRICES.price_for("gpt-4o-mini")
    expected = (464 * price.input + 1536 * price.cache_read + 10 * price.output) / 1e6
    assert completion.cost_usd == pytest.approx(expected)
    assert (stats.cache_read_tokens, stats.cache_write_tokens) == (1536, 0)
    assert stats.cost_usd == pytest.approx(expected)


def test_openai_usage_without_details_reads_no_cache():
    usage = {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}
    with cache_server(CacheServerState(usage=usage)) as (url, _):
        (completion,), _ = _call(_openai(url, "an-unpriced-local-model"))
    assert (completion.prompt_tokens, completion.cache_read_tokens) == (20, 0)
    assert completion.cost_usd is None  # no known price


def test_anthropic_cache_tokens_count_in_the_prompt_and_are_priced_apart():
    usage = {
        "input_tokens": 10,
        "output_tokens": 7,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
    }
    with cache_server(CacheServerState(usage=usage)) as (url, state):
        (completion,), stats = _call(_anthropic(url))
    body = state.anthropic_bodies[0]
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello there", "cache_control": {"type": "ephemeral"}}
            ],
        }
    ]
    assert completion.prompt_tokens == 2110  # input_tokens leaves the cache tokens out
    assert (completion.cache_read_tokens, completion.cache_write_tokens) == (2000, 100)
    price = PRICES.price_for("claude-haiku-4-5")
    expected = (
        10 * price.input + 2000 * price.cache_read + 100 * price.cache_write + 7 * price.output
    ) / 1e6
    assert completion.cost_usd == pytest.approx(expected)
    assert (stats.prompt_tokens, stats.cache_read_tokens, stats.cache_write_tokens) == (
        2110,
        2000,
        100,
    )


def test_a_server_that_refuses_prompt_cache_key_is_asked_without_it_from_then_on():
    with cache_server(CacheServerState(refuse_cache_key=True)) as (url, state):
        backend = _openai(url)
        completions, stats = _call(backend, calls=3)
    sent = ["prompt_cache_key" in body for body in state.openai_bodies]
    assert sent == [True, False, False, False]  # refused once, then never sent again
    assert all(c.text for c in completions)
    assert backend.sends_cache_key is False
    assert (stats.failed, stats.retries, stats.succeeded) == (0, 0, 3)


def test_no_cache_key_no_prompt_cache_key():
    with cache_server() as (url, state):
        _call(_openai(url), CompletionParams(max_tokens=32, temperature=0.0))
    assert "prompt_cache_key" not in state.openai_bodies[0]


TURNS = 5


def _generate(tmp_path: Path, spec: str, cache: bool = True) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(f"cache: {str(cache).lower()}\n", encoding="utf-8")
    db = tmp_path / "rapport.duckdb"
    request = GenerateRequest(
        db=db, count=2, turns=TURNS, backend=spec, domain=TINY_DOMAIN, config=config
    )
    assert generate(request, environ={}).complete == 2
    return db


@pytest.mark.parametrize(
    ("api", "model"), [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")]
)
def test_cost_and_cache_tokens_per_message_conversation_role_and_gateway(tmp_path, api, model):
    with cache_server() as (url, _):
        spec = f"openai:{model}@{url}/v1" if api == "openai" else f"anthropic:{model}@{url}"
        db = _generate(tmp_path, spec)
    price = PRICES.price_for(model)
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT conversation_id, role, exchange, prompt_tokens, completion_tokens, "
            "cache_read_tokens, cache_write_tokens, cost_usd FROM messages"
        ).fetchall()
        overview = dict(
            conn.execute("SELECT conversation_id, cost_usd FROM conversation_overview").fetchall()
        )
        usage = conn.execute(
            "SELECT role, cost_usd, cache_read_tokens, cache_read_share, prompt_tokens "
            "FROM backend_usage ORDER BY role"
        ).fetchall()
        gateway = conn.execute(
            "SELECT cost_usd, cache_read_tokens, cache_write_tokens FROM gateway_stats"
        ).fetchone()
    assert len(rows) == 2 * 2 * TURNS
    for _, _, exchange, prompt, completion, read, write, cost in rows:
        assert cost == pytest.approx(
            usage_cost(price, prompt, completion, cache_read_tokens=read, cache_write_tokens=write)
        )
        assert read > 0 if exchange > 1 else read == 0  # every later turn reads its prefix
        if api == "anthropic":
            assert read + write == prompt  # the breakpoint is at the end: all of it cached
    for cid, cost in overview.items():
        assert cost == pytest.approx(sum(r[7] for r in rows if r[0] == cid))
    for role, cost, read, share, prompt in usage:
        assert cost == pytest.approx(sum(r[7] for r in rows if r[1] == role))
        assert read == sum(r[5] for r in rows if r[1] == role)
        assert share == pytest.approx(read / prompt, abs=1e-4)
    assert gateway[0] == pytest.approx(sum(r[7] for r in rows))
    assert gateway[1] == sum(r[5] for r in rows)
    assert gateway[2] == sum(r[6] for r in rows)
    stats = rapport_in_process("stats", "--db", str(db))
    assert stats.returncode == 0, stats.stderr
    section = stats.stdout.split("Cost and prompt cache by role")[1].split("Truncated")[0]
    assert "cache_read_share" in section and "cost_usd" in section


def test_caching_off_reads_nothing_and_costs_more(tmp_path):
    costs = {}
    for cache in (True, False):
        with cache_server() as (url, _):
            folder = tmp_path / str(cache)
            folder.mkdir()
            db = _generate(folder, f"anthropic:claude-haiku-4-5@{url}", cache=cache)
        with duckdb.connect(str(db), read_only=True) as conn:
            costs[cache], read, write = conn.execute(
                "SELECT sum(cost_usd), sum(cache_read_tokens), sum(cache_write_tokens) "
                "FROM messages"
            ).fetchone()
        if not cache:
            assert (read, write) == (0, 0)
    assert costs[True] < costs[False]


def test_simulated_messages_have_no_cost(tmp_path):
    db = _generate(tmp_path, "simulated")
    with duckdb.connect(str(db), read_only=True) as conn:
        costs = conn.execute("SELECT DISTINCT cost_usd, cache_read_tokens FROM messages").fetchall()
    assert costs == [(None, 0)]
