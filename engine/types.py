"""The messages that cross the backend boundary."""

from __future__ import annotations

from typing import Literal

import msgspec

from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.store.transcripts import TRUNCATED_FINISH_REASONS

Role = Literal["system", "user", "assistant"]
Speaker = Literal["user_sim", "assistant", "judge"]


class ChatMessage(msgspec.Struct, frozen=True):
    role: Role
    content: str


class SimulationHints(msgspec.Struct, frozen=True):
    """What the simulated backend needs to write a plausible turn; real backends ignore it.
    The domain comes with each call, so a simulated backend is built without one."""

    speaker: Speaker
    scenario: Scenario
    domain: Domain
    exchange: int
    target_exchanges: int
    final: bool
    criteria: tuple[str, ...] = ()  # judge calls: the criteria asked about
    side: str = "assistant"  # judge calls: the side judged (assistant | user)


class CompletionParams(msgspec.Struct, frozen=True):
    max_tokens: int
    temperature: float
    seed: int | None = None
    json_schema: dict[str, object] | None = None  # ask for JSON matching this schema
    hints: SimulationHints | None = None
    # Stable per conversation and role (e.g. "<scenario_id>:user"); backends that can reuse a
    # prompt prefix use it (OpenAI `prompt_cache_key`, Anthropic `cache_control`). None: off.
    cache_key: str | None = None
    # This call's timeout, set by the gateway only when it raised the configured one to fit one
    # request (engine/service_time.py); None: the backend's own. Never part of a request body.
    timeout_s: float | None = None


class ReportedLimits(msgspec.Struct, frozen=True):
    """Rate limits a provider announced in its response headers (per minute)."""

    requests: int | None = None
    tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class Completion(msgspec.Struct, frozen=True):
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str
    provider: str
    finish_reason: str | None = None
    limits: ReportedLimits | None = None
    attempts: int = 1  # set by the gateway: latency_s then spans every attempt of the turn
    # Of `prompt_tokens` (every input token, cached or not): read from / written to the
    # provider's prompt cache. Uncached input = prompt_tokens - cache_read - cache_write.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None  # set by the gateway from its price; None: no known price

    @property
    def truncated(self) -> bool:
        """Cut by the token budget: it stopped mid-sentence."""
        return self.finish_reason in TRUNCATED_FINISH_REASONS
