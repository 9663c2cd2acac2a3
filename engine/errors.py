"""Backend failures: retryable ones are retried by the gateway, the rest fail the turn."""

from __future__ import annotations

from rapport.config.errors import RapportError
from rapport.engine.types import ReportedLimits


class BackendError(Exception):
    """A backend call failed. `kind` is a short machine-readable label stored with the error."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        limits: ReportedLimits | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.limits = limits  # rate limits stated in the failed response's headers (429s too)
        # Backpressure is retried with no attempt cap while the gateway makes progress: a 429,
        # and a timeout on a server whose in-flight cap is learned (the gateway marks those).
        self.backpressure = kind == "rate_limited"


class ProviderUnusable(RapportError):
    """Nothing can be done through this provider: the run stops at once instead of failing
    every conversation one by one. Nothing stored is lost; running the command again resumes.
    `kind` is stored as the reason of the conversations the stop interrupted."""

    kind = "provider_unusable"


class ProviderUnreachable(ProviderUnusable):
    """The provider never answered (connection refused, DNS failure)."""

    kind = "connection"


class RateLimitedTooLong(ProviderUnreachable):
    """Every request of a gateway was answered 429 for a long time with no success at all:
    the run stops with one line (a 429 alone never fails a conversation) and resumes next time."""


class TimedOutTooLong(RateLimitedTooLong):
    """Every request of a gateway whose in-flight cap is learned timed out for a long time
    with no success at all: stopped as RateLimitedTooLong is (a timeout is backpressure)."""

    kind = "timeout"


class TurnFailed(Exception):
    """A turn could not be produced after all retries; the conversation is recorded as failed."""

    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(f"{kind}: {message} (after {attempts} attempt{'s' * (attempts != 1)})")
        self.kind = kind
        self.attempts = attempts
        self.turn_index: int | None = None  # which turn failed, once the caller knows it
        self.role: str | None = None

    def at_turn(self, turn_index: int, role: str) -> TurnFailed:
        """This failure, marked with the turn it failed (for the `errors` row)."""
        self.turn_index, self.role = turn_index, role
        return self
