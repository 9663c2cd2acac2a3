"""The fake provider's replies and their usage, one place for live calls and batch items: the
same text, the same token counts and the same prompt-cache emulation whichever way a request
arrives (fakes/provider.py serves them live, fakes/batches.py in batches)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rapport.engine.seeding import derive_seed
from rapport.fakes.prompt_cache import (
    CHARS_PER_TOKEN,
    AnthropicBlock,
    AnthropicCacheUsage,
    AnthropicPromptCache,
    OpenAIPromptCache,
    TooManyBreakpoints,
    anthropic_blocks,
    count_tokens,
    render,
)

if TYPE_CHECKING:
    from rapport.fakes.provider import FakeProviderSettings, FakeProviderState

Clock = Callable[[], float]

_WORDS = (  # noqa: SIM905
    "that sounds heavy and I hear how much it matters to you today so let us take one small "
    "step together and see what changes when you try it for a few days this week"
).split()


def openai_prompt(body: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def last_text(body: dict) -> str:
    """The last message's text (Anthropic content blocks joined)."""
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content", "")
    if isinstance(content, list):
        content = "\n".join(str(block.get("text", "")) for block in content)
    return str(content)


def anthropic_error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


def reply_text(prompt: str, tokens: int) -> str:
    """A deterministic reply of about `tokens` tokens that depends on the prompt."""
    rng = random.Random(derive_seed(prompt[-200:], len(prompt)))
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < tokens * CHARS_PER_TOKEN:
        words.append(rng.choice(_WORDS))
    return " ".join(words).capitalize() + "."


class FakeReplies:
    """Reply texts (generated, or the canned ones in turn) and each API's reply body."""

    def __init__(
        self, settings: FakeProviderSettings, state: FakeProviderState, clock: Clock
    ) -> None:
        self.settings = settings
        self.state = state
        self.openai_cache = OpenAIPromptCache(settings.cache_ttl_s, clock)
        self.anthropic_cache = AnthropicPromptCache(settings.cache_ttl_s, clock)
        self._replies_given = 0

    def reply_for(self, prompt: str, completion_tokens: int) -> str:
        settings = self.settings
        if settings.replies:
            text = settings.replies[self._replies_given % len(settings.replies)]
        else:
            text = reply_text(prompt, completion_tokens)
        self._replies_given += 1
        return text

    def openai_completion(
        self, body: dict, reply_id: str, text: str, prompt: str, completion_tokens: int
    ) -> dict:
        """A `chat.completion` with usage, cached tokens included (and counted)."""
        model = str(body.get("model", "fake"))
        prompt_tokens = count_tokens(prompt)
        cached = 0
        if self.settings.prompt_cache:
            key = body.get("prompt_cache_key")
            cached = self.openai_cache.cached_tokens(model, key and str(key), prompt)
        self.state.cache_read_tokens += cached
        return {
            "id": reply_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }

    def anthropic_message(
        self,
        body: dict,
        reply_id: str,
        text: str,
        blocks: list[AnthropicBlock],
        completion_tokens: int,
    ) -> dict:
        """A `message` with usage split into uncached input, cache writes and cache reads."""
        model = str(body.get("model", "fake"))
        if self.settings.prompt_cache:
            cache = self.anthropic_cache.usage(model, blocks)
        else:
            cache = AnthropicCacheUsage(input_tokens=count_tokens(render(blocks)))
        self.state.cache_read_tokens += cache.cache_read_input_tokens
        self.state.cache_write_tokens += cache.cache_creation_input_tokens
        return {
            "id": reply_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": cache.input_tokens,
                "output_tokens": completion_tokens,
                "cache_creation_input_tokens": cache.cache_creation_input_tokens,
                "cache_read_input_tokens": cache.cache_read_input_tokens,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": cache.ephemeral_5m_input_tokens,
                    "ephemeral_1h_input_tokens": cache.ephemeral_1h_input_tokens,
                },
            },
        }

    def answer_openai(self, body: dict, reply_id: str) -> tuple[int, dict]:
        """A batch item's status and body: the live reply logic without limits or faults."""
        prompt = openai_prompt(body)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 4096)
        completion_tokens = min(self.settings.reply_tokens, max_tokens)
        text = self.reply_for(prompt, completion_tokens)
        reply = self.openai_completion(body, reply_id, text, prompt, completion_tokens)
        self._count_batch_tokens(count_tokens(prompt), completion_tokens)
        return 200, reply

    def answer_anthropic(self, body: dict, reply_id: str) -> tuple[int, dict]:
        try:
            blocks = anthropic_blocks(body)
        except TooManyBreakpoints as error:
            return 400, anthropic_error("invalid_request_error", str(error))
        prompt = render(blocks)
        completion_tokens = min(self.settings.reply_tokens, int(body.get("max_tokens") or 4096))
        text = self.reply_for(prompt, completion_tokens)
        reply = self.anthropic_message(body, reply_id, text, blocks, completion_tokens)
        reply["usage"]["service_tier"] = "batch"
        self._count_batch_tokens(count_tokens(prompt), completion_tokens)
        return 200, reply

    def _count_batch_tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.state.batch_prompt_tokens += prompt_tokens
        self.state.batch_completion_tokens += completion_tokens
