"""The one interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rapport.config.constants import CHARS_PER_TOKEN_ESTIMATE
from rapport.engine.types import ChatMessage, Completion, CompletionParams

# Providers that stand in for a model: the offline simulator and the fixed-reply backend.
SIMULATED_PROVIDERS = frozenset({"simulated", "null"})


class Backend(Protocol):
    """A provider of chat completions. Providers only build requests and parse responses;
    rate limits and retries live once, in the gateway."""

    provider: str
    model: str

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str, chars_per_token: float) -> int:
    """A tokenizer-free estimate, used before a call and when a provider reports no usage."""
    return max(1, round(len(text) / chars_per_token))


def usage_or_estimate(
    prompt_chars: int, text: str, prompt_tokens: object = None, completion_tokens: object = None
) -> tuple[int, int]:
    """(prompt, completion) tokens: what the provider reported where it reported an int, else
    estimated from characters (the one fallback every backend uses)."""
    return (
        prompt_tokens
        if isinstance(prompt_tokens, int)
        else max(1, round(prompt_chars / CHARS_PER_TOKEN_ESTIMATE)),
        completion_tokens
        if isinstance(completion_tokens, int)
        else estimate_tokens(text, CHARS_PER_TOKEN_ESTIMATE),
    )


def simulated(backend: Backend) -> bool:
    """Whether the backend stands in for a model, known by its provider: its text is not a
    model's, it costs nothing and states no limits."""
    return backend.provider in SIMULATED_PROVIDERS


def label(backend: Backend) -> str:
    """How a backend is shown to people: simulated backends always say so."""
    name = f"{backend.provider}:{backend.model}" if backend.model else backend.provider
    return f"{name} (simulated)" if simulated(backend) else name
