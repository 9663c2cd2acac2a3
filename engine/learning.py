"""Limits nobody configured or stated, learned for one gateway: the controllers of
engine/adaptive_limits.py fed what its calls did, and read back as a rate budget, an in-flight
cap (applied by engine/admission.py) and a timeout raised to fit one request.

While the in-flight cap is learned, a timeout is backpressure as a 429 is: the cap shrinks, the
timeout grows when the request was alone, and the call is retried as a 429 is.
"""

from __future__ import annotations

from rapport.engine.adaptive_limits import AdaptiveLimits, LearnedLimits
from rapport.engine.clock import Clock
from rapport.engine.errors import BackendError
from rapport.engine.limits import MinuteBudget

NOTHING_LEARNED = LearnedLimits(None, None)
RATE_RETUNE_FRACTION = 0.05  # a learned rate replaces its budget when it moved this much


class Learning:
    """What one gateway learns (see the module's docstring); `learn_in_flight`: the cap too,
    when neither it nor a rate is configured (a stated rate is a hosted API's limit, which
    latency does not describe)."""

    def __init__(
        self, clock: Clock, label: str, *, learn_in_flight: bool, timeout_s: float | None
    ) -> None:
        self._label = label  # names the gateway in the timeout's notice
        self._adaptive = AdaptiveLimits(clock, learn_in_flight=learn_in_flight, timeout_s=timeout_s)
        self.learn_in_flight = learn_in_flight
        self.in_flight = self._adaptive.in_flight  # the cap to start with (None: not learned)
        self._rate: MinuteBudget | None = None
        self._starts = 0  # requests sent so far: whether another started while one ran
        self._behind_timeout = False  # a timed-out request may still keep the server busy
        self.notice: str | None = None  # set once, when the timeout is first raised

    def current(self) -> LearnedLimits:
        return self._adaptive.current()

    def stop_learning(self) -> None:
        """Limits were stated: they replace whatever was learned."""
        self._adaptive.stop_learning()

    async def acquire_rate(self) -> bool:
        """Wait for the learned rate, if one is known; True when it held the request back."""
        budget = self._rate
        if budget is None:
            return False
        bound = budget.would_wait()
        await budget.acquire(1)
        while self._rate is not None and budget is not self._rate:
            budget = self._rate  # retuned while we waited: pass the one in force too,
            await budget.acquire(1)  # or old and new buckets would each let their rate through
        return bound

    def on_request(self, max_tokens: int) -> None:
        self._adaptive.on_request(max_tokens)

    def retune(self) -> int | None:
        """Follow the controllers: a new rate budget when the learned rate really moved;
        returns the learned in-flight cap (None: none)."""
        learned = self._adaptive.current()
        if learned.rpm is None:
            self._rate = None
        elif self._rate is None or (
            abs(learned.rpm - self._rate.per_minute) >= RATE_RETUNE_FRACTION * self._rate.per_minute
        ):  # a new bucket per real change (aiolimiter's rate is fixed at creation)
            self._rate = MinuteBudget(max(1, round(learned.rpm)), start_full=True)
        return learned.in_flight

    def start(self, nothing_else: bool) -> int | None:
        """A request starts (`nothing_else` in flight from this gateway); returns its mark
        when it started alone, for `succeeded` to tell whether it ran alone."""
        behind_timeout, self._behind_timeout = self._behind_timeout, False
        self._starts += 1
        return self._starts if nothing_else and not behind_timeout else None

    def succeeded(
        self, latency_s: float, completion_tokens: int, *, rate_bound: bool, mark: int | None
    ) -> None:
        """Alone (nothing else started while it ran), its latency is the server's service
        time."""
        self._adaptive.on_success(
            latency_s,
            rate_bound=rate_bound,
            completion_tokens=completion_tokens,
            alone=mark is not None and mark == self._starts,
        )
        self._say_if_timeout_raised()

    def timed_out(self, error: BackendError, waited_s: float, *, alone: bool) -> bool:
        """A request ran past its timeout: backpressure (True) while the cap is learned. A
        request that always runs past the bounded timeout is retried while others succeed;
        once nothing succeeds, the retry policy's `no_success_stop_s` stops the run."""
        self._behind_timeout = True
        if not self.learn_in_flight:
            return False
        self._adaptive.on_timeout(waited_s, alone=alone)
        error.backpressure = True
        self._say_if_timeout_raised()
        return True

    def failed(self, error: BackendError) -> None:
        if error.kind == "rate_limited":
            self._adaptive.on_rate_limited()
        elif error.kind == "timeout" and not error.backpressure:
            self._adaptive.on_timeout()  # (a backpressure timeout told it already)

    @property
    def timeout_s(self) -> float | None:
        """The timeout raised to fit one request (None: not learned)."""
        return self._adaptive.effective_timeout_s

    def _say_if_timeout_raised(self) -> None:
        fit = self._adaptive.timeout
        if self.notice is None and fit is not None and fit.raised:
            self.notice = fit.notice(self._label)
