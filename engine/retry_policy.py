"""When a failed call is tried again, and when a gateway gives up: jittered exponential backoff
(tenacity) that honours the provider's Retry-After; backpressure (a 429, a timeout while the
in-flight cap is learned) retried with no attempt cap while the gateway as a whole still
succeeds; a provider that was never reached or refuses every call stopping the run early."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_random_exponential,
)

from rapport.config.constants import NO_SUCCESS_STOP_S, RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_MIN_S
from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.engine.accounting import GatewayStats
from rapport.engine.clock import Clock
from rapport.engine.errors import (
    BackendError,
    ProviderUnreachable,
    RateLimitedTooLong,
    TimedOutTooLong,
    TurnFailed,
)
from rapport.engine.fail_fast import FailFast
from rapport.engine.types import ChatMessage, Completion, CompletionParams

UNREACHABLE_AFTER_ATTEMPTS = 2  # connection failures before any success mean "down"

Attempt = Callable[[Sequence[ChatMessage], CompletionParams], Awaitable[Completion]]


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, BackendError) and error.retryable


def _is_backpressure(error: BaseException | None) -> bool:
    return isinstance(error, BackendError) and error.backpressure


class RetryPolicy:
    """Retries one gateway's failed calls (see the module's docstring). Waits go through
    `clock`, so a test can see every wait asked for; `stats` counts retries and failures, and
    its successes tell a provider that works from one that never did."""

    def __init__(
        self,
        label: str,
        stats: GatewayStats,
        clock: Clock,
        *,
        max_retries: int = 0,
        backoff_min_s: float = RETRY_BACKOFF_MIN_S,
        backoff_max_s: float = RETRY_BACKOFF_MAX_S,
        no_success_stop_s: float = NO_SUCCESS_STOP_S,
        redactor: Redactor = PATTERNS_ONLY,
        timeout_s: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._label = label
        self._stats = stats
        self._clock = clock
        self._max_retries = max_retries
        self._backoff = wait_random_exponential(multiplier=backoff_min_s, max=backoff_max_s)
        self.backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._no_success_stop_s = no_success_stop_s
        self._redact = redactor  # errors raised to the user may quote a provider's echoed key
        self._timeout_s = timeout_s  # what requests are sent with now (for the stop's line)
        self._last_success_at: float | None = None
        self.fail_fast = FailFast(label, redactor)

    async def run(
        self, attempt: Attempt, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        """`attempt(messages, params)`, retrying retryable failures; raises TurnFailed when
        retries run out.

        The first attempt is made directly (most calls succeed, and the retry machinery costs
        more than an instant backend); tenacity takes over from the first retryable failure.
        A 429 is backpressure, not a failure: it is retried with no attempt cap while the
        gateway keeps succeeding (see `_check_progress`). A completion that took retries
        carries its attempts, and a latency from the first attempt's start.
        """
        started = self._clock.now()
        if self._last_success_at is None:
            self._last_success_at = started
        counted_failures = 0  # failures that count against max_retries (backpressure does not)

        def give_up(error: BaseException | None) -> bool:
            nonlocal counted_failures
            if _is_backpressure(error):
                assert isinstance(error, BackendError)
                self._check_progress(error)
                return False
            counted_failures += 1
            return counted_failures > self._max_retries

        try:
            completion = await attempt(messages, params)
            self._last_success_at = self._clock.now()
            return completion
        except BackendError as error:
            if not error.retryable or give_up(error):
                self._failed(error)
                raise TurnFailed(error.kind, str(error), 1) from error
            first_failure = error
        attempts = 1
        self._stats.retries += 1
        await self._clock.sleep(self._wait_after(first_failure, 1))
        retrying = AsyncRetrying(
            sleep=self._clock.sleep,
            stop=lambda state: give_up(state.outcome.exception() if state.outcome else None),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._count_retry,
            reraise=True,
        )
        last_failure = first_failure
        try:
            async for retry in retrying:
                with retry:
                    attempts += 1
                    self._check_reachable(last_failure, attempts)
                    try:
                        completion = await attempt(messages, params)
                    except BackendError as error:
                        last_failure = error
                        raise
                    self._last_success_at = now = self._clock.now()
                    return msgspec.structs.replace(
                        completion, attempts=attempts, latency_s=now - started
                    )
        except BackendError as error:
            self._failed(error)
            raise TurnFailed(error.kind, str(error), attempts) from error
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

    def _failed(self, error: BackendError) -> None:
        self._stats.failed += 1
        self.fail_fast.record(error, self._stats.succeeded)

    def _check_progress(self, error: BackendError) -> None:
        """Stop the run when the gateway as a whole has had no success for too long."""
        since = self._last_success_at
        waited = 0.0 if since is None else self._clock.now() - since
        if waited <= self._no_success_stop_s:
            return
        if error.kind == "timeout":
            timeout = self._timeout_s()
            after = "" if timeout is None else f" after {timeout:g} s"
            raise TimedOutTooLong(
                f"{self._label}: every request timed out{after} for {waited:.0f} s with no "
                "success; stopped (run again to resume)"
            )
        raise RateLimitedTooLong(
            f"{self._label}: every request answered 429 (rate limited) for {waited:.0f} s "
            "with no success; stopped (run again to resume)"
        )

    def _check_reachable(self, error: BackendError, attempts: int) -> None:
        """A provider that has never answered and refuses connections is down: stop the run."""
        if (
            error.kind == "connection"
            and self._stats.succeeded == 0
            and attempts > UNREACHABLE_AFTER_ATTEMPTS
        ):
            raise ProviderUnreachable(
                self._redact(f"{self._label}: cannot reach the provider ({error})")
            )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        # tenacity counts from the second attempt overall: one attempt came before it.
        return self._wait_after(error, state.attempt_number + 1)

    def _wait_after(self, error: BaseException | None, failed_attempts: int) -> float:
        """Honour the provider's Retry-After, else jittered exponential backoff."""
        asked = error.retry_after_s if isinstance(error, BackendError) else None
        if asked is not None:
            return asked + random.uniform(0, self.backoff_min_s)
        state = RetryCallState(None, None, (), {})
        state.attempt_number = failed_attempts
        return min(self._backoff(state), self._backoff_max_s)

    def _count_retry(self, _state: RetryCallState) -> None:
        self._stats.retries += 1
