"""How long one request takes a server when it has the server to itself, and the timeout that
follows from it: a configured timeout shorter than one longest reply would fail every long turn
on a slow local server, so it is raised to fit (bounded, and said once).

Pure logic, fed by the learned limits (engine/adaptive_limits.py) with the replies of requests
that were alone on the server, and with timeouts of requests sent with nothing else in flight.
"""

from __future__ import annotations

import statistics
from collections import deque

from rapport.config import constants


class ServiceTime:
    """latency ≈ overhead + seconds per completion token × tokens, fitted on recent replies
    served alone; extrapolated to `max_tokens` for the longest reply a request may ask for."""

    def __init__(self) -> None:
        self._samples: deque[tuple[int, float]] = deque(maxlen=constants.SERVICE_TIME_SAMPLES)

    def observe(self, latency_s: float, completion_tokens: int) -> None:
        self._samples.append((max(1, completion_tokens), latency_s))

    def longest_s(self, max_tokens: int) -> float | None:
        """The service time of a reply of `max_tokens` tokens; None before any sample."""
        if not self._samples:
            return None
        tokens = [t for t, _ in self._samples]
        latencies = [s for _, s in self._samples]
        if max(tokens) - min(tokens) >= constants.SERVICE_FIT_MIN_SPREAD_TOKENS:
            slope, intercept = statistics.linear_regression(tokens, latencies)
            if slope > 0:
                return max(0.0, intercept) + slope * max_tokens
        # Replies of about one length (often all cut at max_tokens): time per token, overhead
        # included (an overestimate for short replies, never an underestimate).
        per_token = statistics.median(s / t for t, s in self._samples)
        return per_token * max_tokens


class TimeoutFit:
    """The timeout requests are sent with: the configured one, unless one request's measured
    service time (or a timeout of a request that was alone) says it cannot fit, then
    TIMEOUT_FIT_MARGIN × that time, at most TIMEOUT_RAISE_MAX × the configured timeout. Until
    the first reply, the bound: a cold server's first reply carries its first prefill (a long
    system prompt took 38 s on a busy 2-core machine), and a request given up on keeps a
    one-slot server busy anyway, delaying every retry behind it."""

    def __init__(self, configured_s: float) -> None:
        self.configured_s = configured_s
        self.bound_s = configured_s * constants.TIMEOUT_RAISE_MAX
        self.service = ServiceTime()
        self._max_tokens = 0
        self._floor_s = 0.0  # raised by timeouts of requests alone on the server: never lowered
        self._ran_past_s = 0.0  # the longest timeout a request alone on the server ran past
        self.replied = False

    def on_request(self, max_tokens: int) -> None:
        self._max_tokens = max(self._max_tokens, max_tokens)

    def on_timeout_alone(self, timeout_s: float) -> None:
        """A request with nothing else in flight ran past `timeout_s`: one request needs more."""
        self._ran_past_s = max(self._ran_past_s, timeout_s)
        self._floor_s = max(self._floor_s, constants.TIMEOUT_RAISE_ON_TIMEOUT * timeout_s)

    def longest_service_s(self) -> float | None:
        return self.service.longest_s(self._max_tokens) if self._max_tokens else None

    @property
    def effective_s(self) -> float:
        if not self.replied:
            return self.bound_s
        needed = self._floor_s
        longest = self.longest_service_s()
        if longest is not None and longest > self.configured_s:
            needed = max(needed, constants.TIMEOUT_FIT_MARGIN * longest)
        return min(self.bound_s, max(self.configured_s, needed))

    @property
    def raised(self) -> bool:
        """Raised because of what was measured (not the first request's cold-start bound)."""
        return self.effective_s > self.configured_s and (self.replied or self._ran_past_s > 0)

    def notice(self, label: str) -> str:
        """The one line that says the timeout was raised, and why."""
        longest = self.longest_service_s()
        measured = (
            f"one {self._max_tokens}-token reply takes about {longest:.1f} s here"
            if longest is not None and longest > self.configured_s
            else f"a request alone on the server ran past {self._ran_past_s:.0f} s"
        )
        return (
            f"{label}: timeout_s {self.configured_s:g} s is shorter than one request "
            f"({measured}): requests are sent with {self.effective_s:.0f} s "
            f"(at most {constants.TIMEOUT_RAISE_MAX:g}× timeout_s = {self.bound_s:g} s)"
        )
