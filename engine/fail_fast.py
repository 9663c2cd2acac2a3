"""Stop a run whose provider refuses every call the same way (a bad key, an unknown model, a
missing command) after a few calls, instead of failing each planned conversation in turn."""

from __future__ import annotations

from rapport.config.constants import FAIL_FAST_AFTER_CALLS
from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.engine.errors import BackendError, ProviderUnusable


class GatewayRefusing(ProviderUnusable):
    """The first calls of a gateway all failed with the same error that no retry can fix."""

    def __init__(self, gateway: str, error: BackendError, calls: int, redact: Redactor) -> None:
        super().__init__(
            redact(
                f"{gateway}: the first {calls} calls all failed with {error.kind} ({error}); "
                "stopped before the rest of the plan: fix it and run the same command again"
            )
        )
        self.kind = error.kind


class FailFast:
    """Watches one gateway's failed calls until its first success: once it has worked, a
    failure belongs to its request, not to the gateway."""

    def __init__(
        self, gateway: str, redact: Redactor = PATTERNS_ONLY, after: int = FAIL_FAST_AFTER_CALLS
    ) -> None:
        self._gateway = gateway
        self._redact = redact
        self._after = after
        self._kind: str | None = None
        self._streak = 0

    def record(self, error: BackendError, succeeded: int) -> None:
        """Note a failed call; raise GatewayRefusing when no call has succeeded yet and the
        last `after` calls all failed with this same non-retryable kind of error."""
        if succeeded:
            return
        if error.retryable:
            self._kind, self._streak = None, 0
            return
        if error.kind != self._kind:
            self._kind, self._streak = error.kind, 0
        self._streak += 1
        if self._streak >= self._after:
            raise GatewayRefusing(self._gateway, error, self._streak, self._redact)
