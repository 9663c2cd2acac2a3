"""The fake provider's prompt caching, read through the official SDKs' usage fields: OpenAI's
automatic prefix cache (from 1,024 tokens, 128-token steps, per prompt_cache_key) and
Anthropic's explicit breakpoints (limit of 4, minimum length per model, lifetime refreshed on
read). A settable clock stands in for the minutes of a cache lifetime."""

from __future__ import annotations

import anthropic
import openai
import pytest

from rapport.fakes.provider import FakeProviderSettings, running_fake_provider

TTL_S = 300.0
EPHEMERAL = {"type": "ephemeral"}


class ManualClock:
    """The provider's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text_of(tokens: int, seed: str) -> str:
    """Exactly `tokens` fake tokens (4 characters each) that differ by seed."""
    unit = (seed * 4)[:4]
    return unit * tokens


def tokens(*texts: str) -> int:
    """The fake's count of a prompt rendered in request order."""
    return max(1, round(len("\n".join(texts)) / 4))


def _openai(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="sk-cache", max_retries=0)


def _anthropic(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key="sk-ant-cache", max_retries=0
    )


def _chat(client: openai.OpenAI, contents: list[str], key: str | None = None) -> tuple[int, int]:
    """(prompt_tokens, cached_tokens) of one call whose messages alternate user/assistant."""
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": content}
        for i, content in enumerate(contents)
    ]
    extra = {"prompt_cache_key": key} if key else {}
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=10,
        **extra,  # type: ignore[arg-type]
    )
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    return usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens or 0


def test_openai_growing_conversation_reads_its_history_in_128_token_steps():
    with running_fake_provider(FakeProviderSettings()) as (base_url, state):
        client = _openai(base_url)
        history = [text_of(1500, "a")]
        assert _chat(client, history) == (1500, 0)  # the first call writes
        history += [text_of(300, "b"), text_of(200, "c")]
        prompt_tokens, cached = _chat(client, history)
        assert prompt_tokens == tokens(*history)  # cached tokens are part of prompt_tokens
        assert cached == 1024 + 3 * 128  # 1,500 seen, rounded down to the grid
        history += [text_of(100, "d"), text_of(400, "e")]
        prompt_tokens, cached = _chat(client, history)
        assert cached == 1024 + ((tokens(*history[:3]) - 1024) // 128) * 128
        assert cached % 128 == 0 and cached > 1408
    assert state.cache_read_tokens == 1408 + cached


def test_openai_caches_nothing_below_1024_tokens():
    with running_fake_provider(FakeProviderSettings()) as (base_url, _):
        client = _openai(base_url)
        short = [text_of(1000, "a")]
        assert _chat(client, short) == (1000, 0)
        assert _chat(client, short) == (1000, 0)
        # a longer prompt over the short one: nothing of the short one was cached
        assert _chat(client, [*short, text_of(500, "b")])[1] == 0
        assert _chat(client, [*short, text_of(500, "b"), "more"])[1] == 1024 + 3 * 128


def test_openai_prompt_cache_key_is_part_of_the_cache():
    with running_fake_provider(FakeProviderSettings()) as (base_url, _):
        client = _openai(base_url)
        prompt = [text_of(2048, "a")]
        assert _chat(client, prompt, key="conv-1-user")[1] == 0
        assert _chat(client, prompt, key="conv-2-user")[1] == 0
        assert _chat(client, prompt, key="conv-1-user")[1] == 2048
        assert _chat(client, prompt)[1] == 0  # no key is a namespace of its own


def test_openai_cache_expires_after_its_lifetime_since_last_use():
    clock = ManualClock()
    settings = FakeProviderSettings(cache_ttl_s=TTL_S)
    with running_fake_provider(settings, clock=clock) as (base_url, _):
        client = _openai(base_url)
        prompt = [text_of(1200, "a")]
        _chat(client, prompt)
        clock.now += TTL_S * 0.8
        assert _chat(client, prompt)[1] == 1152  # a read refreshes the entry
        clock.now += TTL_S * 0.8
        assert _chat(client, prompt)[1] == 1152
        clock.now += TTL_S + 1
        assert _chat(client, prompt)[1] == 0


def test_caching_turned_off_reports_no_cached_tokens():
    with running_fake_provider(FakeProviderSettings(prompt_cache=False)) as (base_url, state):
        client = _openai(base_url)
        prompt = [text_of(2048, "a")]
        _chat(client, prompt)
        assert _chat(client, prompt) == (2048, 0)
        reply = _anthropic(base_url).messages.create(
            model="claude-sonnet-4",
            max_tokens=10,
            system=[{"type": "text", "text": text_of(2048, "s"), "cache_control": EPHEMERAL}],
            messages=[{"role": "user", "content": "hello"}],
        )
        assert reply.usage.cache_creation_input_tokens == 0
        assert reply.usage.input_tokens == tokens(text_of(2048, "s"), "hello")
    assert state.cache_read_tokens == state.cache_write_tokens == 0


def _message(
    client: anthropic.Anthropic,
    system: str,
    turns: list[str],
    *,
    model: str = "claude-sonnet-4",
    ttl: str | None = None,
    breakpoints_on_turns: int = 1,
) -> anthropic.types.Usage:
    """A call with a breakpoint on the system prompt and on the last `breakpoints_on_turns`
    messages, the way a conversation moves its breakpoint along the history."""
    control = {**EPHEMERAL, "ttl": ttl} if ttl else EPHEMERAL
    messages = []
    for i, turn in enumerate(turns):
        block: dict = {"type": "text", "text": turn}
        if i >= len(turns) - breakpoints_on_turns:
            block["cache_control"] = control
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": [block]})
    reply = client.messages.create(
        model=model,
        max_tokens=10,
        system=[{"type": "text", "text": system, "cache_control": control}],  # type: ignore[list-item]
        messages=messages,  # type: ignore[arg-type]
    )
    usage = reply.usage
    split = (
        usage.input_tokens
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )
    assert split == tokens(system, *turns)  # every input token in exactly one field
    return usage


def test_anthropic_breakpoints_write_then_read_a_growing_conversation():
    system = text_of(1100, "s")
    with running_fake_provider(FakeProviderSettings()) as (base_url, state):
        client = _anthropic(base_url)
        turns = [text_of(200, "a")]
        first = _message(client, system, turns)
        assert first.cache_read_input_tokens == 0
        assert first.cache_creation_input_tokens == tokens(system, *turns)
        assert first.input_tokens == 0
        assert first.cache_creation is not None
        assert first.cache_creation.ephemeral_5m_input_tokens == tokens(system, *turns)

        turns += [text_of(150, "b"), text_of(100, "c")]
        second = _message(client, system, turns)  # the breakpoint moved two blocks on
        assert second.cache_read_input_tokens == tokens(system, turns[0])
        assert second.cache_creation_input_tokens == tokens(system, *turns) - tokens(
            system, turns[0]
        )
        turns.append(text_of(50, "d"))  # an uncached tail after the last breakpoint
        third = _message(client, system, turns, breakpoints_on_turns=0)
        assert third.cache_read_input_tokens == tokens(system)
        assert third.cache_creation_input_tokens == 0
        assert third.input_tokens == tokens(system, *turns) - tokens(system)
    assert state.cache_write_tokens == tokens(system, *turns[:3])


def test_anthropic_caches_nothing_below_the_models_minimum():
    system = text_of(1500, "s")  # over Sonnet's 1,024, under Haiku 3.5's 2,048
    with running_fake_provider(FakeProviderSettings()) as (base_url, _):
        client = _anthropic(base_url)
        for _ in range(2):
            haiku = _message(client, system, ["hi"], model="claude-3-5-haiku-20241022")
            assert haiku.cache_creation_input_tokens == haiku.cache_read_input_tokens == 0
            assert haiku.input_tokens == tokens(system, "hi")
        _message(client, system, ["hi"], model="claude-sonnet-4-20250514")
        sonnet = _message(client, system, ["hi"], model="claude-sonnet-4-20250514")
        assert sonnet.cache_read_input_tokens == tokens(system, "hi")


def test_anthropic_allows_at_most_four_breakpoints():
    with running_fake_provider(FakeProviderSettings()) as (base_url, state):
        client = _anthropic(base_url)
        turns = [text_of(10, str(i)) for i in range(5)]
        _message(client, "system", turns, breakpoints_on_turns=3)  # 4 with the system's
        with pytest.raises(anthropic.BadRequestError) as refused:
            _message(client, "system", turns, breakpoints_on_turns=4)
        assert isinstance(refused.value.body, dict)
        error = refused.value.body["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"] == (
            "A maximum of 4 blocks with cache_control may be provided. Found 5."
        )
    assert state.requests == 1  # the refused call never reached the model


def test_anthropic_lifetime_is_refreshed_on_read_and_one_hour_lives_longer():
    clock = ManualClock()
    system = text_of(1100, "s")
    settings = FakeProviderSettings(cache_ttl_s=TTL_S)
    with running_fake_provider(settings, clock=clock) as (base_url, _):
        client = _anthropic(base_url)
        _message(client, system, ["hi"], breakpoints_on_turns=0)
        clock.now += TTL_S * 0.8
        assert _message(client, system, ["hi"], breakpoints_on_turns=0).cache_read_input_tokens
        clock.now += TTL_S * 0.8  # past the first write, within the refreshed lifetime
        assert _message(client, system, ["hi"], breakpoints_on_turns=0).cache_read_input_tokens
        clock.now += TTL_S + 1
        expired = _message(client, system, ["hi"], breakpoints_on_turns=0)
        assert expired.cache_read_input_tokens == 0
        assert expired.cache_creation_input_tokens == tokens(system)

        long_lived = text_of(1100, "L")
        _message(client, long_lived, ["hi"], ttl="1h", breakpoints_on_turns=0)
        clock.now += TTL_S * 2
        hit = _message(client, long_lived, ["hi"], ttl="1h", breakpoints_on_turns=0)
        assert hit.cache_read_input_tokens == tokens(long_lived)


def test_batch_items_share_the_cache_with_live_calls():
    clock = ManualClock()
    settings = FakeProviderSettings(batch_delay_s=1.0)
    system = text_of(1100, "s")
    with running_fake_provider(settings, clock=clock) as (base_url, _):
        client = _anthropic(base_url)
        _message(client, system, ["hi"], breakpoints_on_turns=0)
        params = {
            "model": "claude-sonnet-4",
            "max_tokens": 10,
            "system": [{"type": "text", "text": system, "cache_control": EPHEMERAL}],
            "messages": [{"role": "user", "content": "judge this"}],
        }
        batch = client.messages.batches.create(
            requests=[{"custom_id": "j1", "params": params}]  # type: ignore[list-item]
        )
        clock.now += 2.0
        (result,) = client.messages.batches.results(batch.id)
        assert result.result.type == "succeeded"
        assert result.result.message.usage.cache_read_input_tokens == tokens(system)
