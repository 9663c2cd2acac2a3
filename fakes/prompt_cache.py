"""Prompt caching as the two APIs document it, so the fake provider's usage fields show what a
run would really be billed for cached input.

OpenAI (automatic): a prompt of at least 1,024 tokens is cached; a later prompt reads the
longest previously seen prefix of itself, counted as 1,024 + k·128 tokens (rounded down to that
grid), reported as `prompt_tokens_details.cached_tokens` (included in `prompt_tokens`). Entries
live `ttl_s` after their last use. `prompt_cache_key` routes a request to a cache shard; here it
is simply part of the cache's namespace (with the model), so the same prefix under another key
misses. Roles are not part of the match (the rendered text is).

Anthropic (explicit): only prefixes ending at a `cache_control` breakpoint (system text blocks,
message content blocks; at most 4 per request, tools counted too) are written; a breakpoint
reads the longest live prefix ending at it or at one of the 20 block boundaries before it; a
prefix below the model's minimum cacheable length is neither written nor read. Lifetime: 5
minutes (`ttl_s`), refreshed on read; `"ttl": "1h"` lives 12 times as long. Reported as
`cache_read_input_tokens`, `cache_creation_input_tokens` (from the read point up to the last
written breakpoint) and `input_tokens` = the rest.

Token counts use the fake's chars/4 on the prompt rendered in request order (system, then
messages, joined by newlines), so a prefix never counts more tokens than the whole prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b
from typing import Any

import msgspec

CHARS_PER_TOKEN = 4.0
OPENAI_MIN_TOKENS = 1024
OPENAI_STEP_TOKENS = 128
ANTHROPIC_MAX_BREAKPOINTS = 4
ANTHROPIC_LOOKBACK_BLOCKS = 20
LONG_TTL_FACTOR = 12  # "1h" against the default "5m"
# minimum cacheable prompt length by model-name prefix (Anthropic's prompt-caching docs);
# the first match wins, anything else is 1,024
ANTHROPIC_MIN_TOKENS: tuple[tuple[str, int], ...] = (
    ("claude-opus-4-5", 4096),
    ("claude-opus-4-6", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
    ("claude-haiku", 2048),
)

Clock = Callable[[], float]


def count_tokens(text: str) -> int:
    return tokens_of_chars(len(text))


def tokens_of_chars(chars: int) -> int:
    return max(1, round(chars / CHARS_PER_TOKEN))


def anthropic_min_tokens(model: str) -> int:
    name = model.lower()
    return next((size for prefix, size in ANTHROPIC_MIN_TOKENS if name.startswith(prefix)), 1024)


class _Entries:
    """Prefix digests with their expiry time (and lifetime, for refreshes)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._expiry: dict[bytes, tuple[float, float]] = {}

    def alive(self, key: bytes, now: float) -> bool:
        entry = self._expiry.get(key)
        if entry is None:
            return False
        if entry[0] <= now:
            del self._expiry[key]
            return False
        return True

    def touch(self, key: bytes, now: float, ttl_s: float | None = None) -> None:
        """Write the entry, or refresh it with its own lifetime (or a longer new one)."""
        old = self._expiry.get(key)
        lifetime = max(ttl_s or 0.0, old[1] if old else 0.0)
        self._expiry[key] = (now + lifetime, lifetime)

    def __len__(self) -> int:
        return len(self._expiry)


class OpenAIPromptCache:
    """Automatic prefix caching in 128-token steps from 1,024 tokens."""

    def __init__(self, ttl_s: float, clock: Clock) -> None:
        self.ttl_s = ttl_s
        self.entries = _Entries(clock)

    def cached_tokens(self, model: str, cache_key: str | None, prompt: str) -> int:
        """The tokens read from the cache for this prompt; caches its prefixes for later."""
        now = self.entries.clock()
        digest = blake2b(f"{model}\x00{cache_key or ''}\x00".encode(), digest_size=16)
        keys: list[tuple[int, bytes]] = []
        done = 0
        tokens = OPENAI_MIN_TOKENS
        while (end := int(tokens * CHARS_PER_TOKEN)) <= len(prompt):
            digest.update(prompt[done:end].encode())
            keys.append((tokens, digest.copy().digest()))
            done = end
            tokens += OPENAI_STEP_TOKENS
        cached = next((t for t, key in reversed(keys) if self.entries.alive(key, now)), 0)
        for _, key in keys:
            self.entries.touch(key, now, self.ttl_s)
        return cached


class AnthropicBlock(msgspec.Struct, frozen=True):
    """One rendered content block, in request order; `ttl` is set on a breakpoint."""

    role: str
    text: str
    ttl: str | None = None


class AnthropicCacheUsage(msgspec.Struct, frozen=True):
    input_tokens: int  # uncached, after the last breakpoint written or read
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class TooManyBreakpoints(ValueError):
    pass


def _breakpoint(block: Any) -> str | None:
    control = block.get("cache_control") if isinstance(block, dict) else None
    if not isinstance(control, dict):
        return None
    return str(control.get("ttl") or "5m")


def _text(block: Any) -> str:
    return str(block.get("text", "")) if isinstance(block, dict) else str(block)


def anthropic_blocks(body: dict[str, Any]) -> list[AnthropicBlock]:
    """The request's system and message content blocks in order (an absent system is one empty
    block, a string content one block), with their breakpoints; raises TooManyBreakpoints."""
    blocks: list[AnthropicBlock] = []
    system = body.get("system") or ""
    if isinstance(system, list) and system:
        blocks += [AnthropicBlock("system", _text(b), _breakpoint(b)) for b in system]
    else:
        blocks.append(AnthropicBlock("system", str(system) if not isinstance(system, list) else ""))
    for message in body.get("messages", []):
        role = str(message.get("role", "user"))
        content = message.get("content", "")
        if isinstance(content, list) and content:
            blocks += [AnthropicBlock(role, _text(b), _breakpoint(b)) for b in content]
        else:
            blocks.append(AnthropicBlock(role, "" if isinstance(content, list) else str(content)))
    tools = body.get("tools") or []
    count = sum(b.ttl is not None for b in blocks) + sum(_breakpoint(t) is not None for t in tools)
    if count > ANTHROPIC_MAX_BREAKPOINTS:
        raise TooManyBreakpoints(
            f"A maximum of {ANTHROPIC_MAX_BREAKPOINTS} blocks with cache_control may be "
            f"provided. Found {count}."
        )
    return blocks


def render(blocks: list[AnthropicBlock]) -> str:
    return "\n".join(block.text for block in blocks)


class AnthropicPromptCache:
    """Explicit breakpoints, minimum length per model, lifetime refreshed on read."""

    def __init__(self, ttl_s: float, clock: Clock) -> None:
        self.ttl_s = ttl_s
        self.entries = _Entries(clock)

    def _lifetime(self, ttl: str | None) -> float:
        return self.ttl_s * (LONG_TTL_FACTOR if ttl == "1h" else 1)

    def usage(self, model: str, blocks: list[AnthropicBlock]) -> AnthropicCacheUsage:
        now = self.entries.clock()
        total = tokens_of_chars(len(render(blocks)))
        # the prefix ending at each block: its digest and its token count
        digest = blake2b(f"{model}\x00".encode(), digest_size=16)
        keys: list[bytes] = []
        tokens: list[int] = []
        chars = -1
        for block in blocks:
            digest.update(f"\x1e{block.role}\x1f{block.text}".encode())
            keys.append(digest.copy().digest())
            chars += len(block.text) + 1
            tokens.append(tokens_of_chars(chars))
        minimum = anthropic_min_tokens(model)
        breakpoints = [i for i, block in enumerate(blocks) if block.ttl is not None]
        read = -1
        for point in breakpoints:
            for position in range(point, max(-1, point - ANTHROPIC_LOOKBACK_BLOCKS - 1), -1):
                if position <= read:
                    break
                if tokens[position] >= minimum and self.entries.alive(keys[position], now):
                    read = position
                    break
        if read >= 0:
            self.entries.touch(keys[read], now)
        read_tokens = tokens[read] if read >= 0 else 0
        written = {"5m": 0, "1h": 0}
        last = read_tokens
        for point in breakpoints:
            if point <= read or tokens[point] < minimum:
                continue
            ttl = "1h" if blocks[point].ttl == "1h" else "5m"
            self.entries.touch(keys[point], now, self._lifetime(ttl))
            written[ttl] += tokens[point] - last
            last = tokens[point]
        creation = written["5m"] + written["1h"]
        return AnthropicCacheUsage(
            input_tokens=max(0, total - read_tokens - creation),
            cache_creation_input_tokens=creation,
            cache_read_input_tokens=read_tokens,
            ephemeral_5m_input_tokens=written["5m"],
            ephemeral_1h_input_tokens=written["1h"],
        )
