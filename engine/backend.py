"""The one interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rapport.engine.types import ChatMessage, Completion, CompletionParams


class Backend(Protocol):
    """A provider of chat completions. Providers only build requests and parse responses;
    rate limits and retries live once, in the gateway."""

    provider: str
    model: str
    simulated: bool

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str, chars_per_token: float) -> int:
    """A tokenizer-free estimate, used before a call and when a provider reports no usage."""
    return max(1, round(len(text) / chars_per_token))


def label(backend: Backend) -> str:
    """How a backend is shown to people: simulated backends always say so."""
    name = f"{backend.provider}:{backend.model}" if backend.model else backend.provider
    return f"{name} (simulated)" if backend.simulated else name
