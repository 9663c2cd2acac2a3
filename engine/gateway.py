"""One gateway per (provider, model, base_url): budgets and retries shared by every caller."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence

import anyio
import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from config.constants import (
    CHARS_PER_TOKEN_ESTIMATE,
    RETRY_BACKOFF_MAX_S,
    RETRY_BACKOFF_MIN_S,
)
from engine.backend import Backend, label
from engine.errors import BackendError, TurnFailed
from engine.limits import MinuteBudget
from engine.types import ChatMessage, Completion, CompletionParams

LATENCY_SAMPLES = 10_000


class GatewayStats(msgspec.Struct):
    """Counters of one gateway, read by the progress display."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies_s: deque[float] = msgspec.field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, BackendError) and error.retryable


class Gateway:
    """Wraps a backend with its requests/min and tokens/min budgets and jittered retries that
    honour the provider's Retry-After."""

    def __init__(
        self,
        backend: Backend,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_retries: int = 0,
        backoff_min_s: float = RETRY_BACKOFF_MIN_S,
        backoff_max_s: float = RETRY_BACKOFF_MAX_S,
    ) -> None:
        self.backend = backend
        self.label = label(backend)
        self.stats = GatewayStats()
        self._requests = MinuteBudget(rpm) if rpm else None
        self._tokens = MinuteBudget(tpm) if tpm else None
        self._max_retries = max_retries
        self._backoff = wait_random_exponential(multiplier=backoff_min_s, max=backoff_max_s)
        self._backoff_max_s = backoff_max_s

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        """Complete, retrying retryable failures; raises TurnFailed when retries run out.

        The first attempt is made directly (most calls succeed, and the retry machinery costs
        more than an instant backend); tenacity takes over from the first retryable failure.
        """
        try:
            return await self._attempt(messages, params)
        except BackendError as error:
            if not error.retryable or self._max_retries == 0:
                self.stats.failed += 1
                raise TurnFailed(error.kind, str(error), 1) from error
            first_failure = error
        attempts = 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._count_retry,
            reraise=True,
        )
        self.stats.retries += 1
        await anyio.sleep(self._wait_after(first_failure, 1))
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    return await self._attempt(messages, params)
        except BackendError as error:
            self.stats.failed += 1
            raise TurnFailed(error.kind, str(error), attempts) from error
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

    async def _attempt(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            prompt_chars = sum(len(m.content) for m in messages)
            await self._tokens.acquire(prompt_chars / CHARS_PER_TOKEN_ESTIMATE + params.max_tokens)
        self.stats.requests += 1
        try:
            completion = await self.backend.complete(messages, params)
        except BackendError as error:
            if error.kind == "rate_limited":
                self.stats.rate_limited += 1
            raise
        self.stats.succeeded += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        self.stats.latencies_s.append(completion.latency_s)
        return completion

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        # tenacity counts from the second attempt overall: one attempt came before it.
        return self._wait_after(error, state.attempt_number + 1)

    def _wait_after(self, error: BaseException | None, failed_attempts: int) -> float:
        """Honour the provider's Retry-After, else jittered exponential backoff."""
        asked = error.retry_after_s if isinstance(error, BackendError) else None
        if asked is not None:
            return asked + random.uniform(0, RETRY_BACKOFF_MIN_S)
        state = RetryCallState(None, None, (), {})
        state.attempt_number = failed_attempts
        return min(self._backoff(state), self._backoff_max_s)

    def _count_retry(self, _state: RetryCallState) -> None:
        self.stats.retries += 1

    async def aclose(self) -> None:
        await self.backend.aclose()
