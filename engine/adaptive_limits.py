"""Limits learned from the provider's behaviour when nobody configured or stated any.

Two controllers, as network congestion control does it:

- the request rate, by additive increase / multiplicative decrease: dormant until the first
  429 (most servers never send one), then set just under the rate the provider really served
  and raised a little with each success while the rate is what holds requests back;
- the in-flight cap, by latency (TCP Vegas, Netflix's concurrency-limits): each window of
  answers, compare its median latency with the lowest seen; grow the cap while latency stays
  flat (doubling until the first sign of congestion, then one more per window), shrink it when
  latency grows (requests queue in the server), on a 429 and on a timeout. A one-slot server
  settles at one request at a time, probing two now and then; a server with many slots at
  dozens, a little above its slots (its queue stays short).

With a timeout (`timeout_s`), the cap grows or probes only while the latency seen says one more
request still fits it (p95 × (cap + 1) / cap below the timeout: on a one-slot server each
request in flight adds a whole service time to the wait), and the timeout itself is raised when
one request alone needs more than it (engine/service_time.py).

Pure logic: the gateway reports what happened and reads `rpm` and `in_flight` back. Time comes
from the gateway's clock, so tests run it in virtual time.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

import msgspec

from rapport.config import constants
from rapport.engine.clock import Clock
from rapport.engine.service_time import TimeoutFit


class LearnedLimits(msgspec.Struct, frozen=True):
    """What the controllers hold now; None: not limited (yet)."""

    rpm: float | None
    in_flight: int | None


class AdaptiveLimits:
    """Learns a request rate (from 429s) and an in-flight cap (from latency)."""

    def __init__(
        self,
        clock: Clock,
        *,
        learn_rate: bool = True,
        learn_in_flight: bool = True,
        timeout_s: float | None = None,
    ):
        self._clock = clock
        self.learn_rate = learn_rate
        self.learn_in_flight = learn_in_flight
        self.rpm: float | None = None
        self.in_flight: int | None = constants.LEARNED_IN_FLIGHT_START if learn_in_flight else None
        self.slow_start = True
        self._window: list[float] = []
        self._baseline_s: float | None = None
        self._flat_windows = 0
        self._congested_windows = 0  # in a row
        self._window_cap: int | None = None  # the cap a flat window closed at (slow start)
        self._successes: deque[float] = deque()
        self._ceiling: tuple[float, float] | None = None  # (rpm, when) of the last cut
        self._best: tuple[float, float] | None = None  # (rpm served, when): the best seen
        self._first_seen: float | None = None
        self._last_decrease = -math.inf
        # Latencies of recent answers (timeouts at their full time): will one more fit?
        self._recent: deque[float] = deque(maxlen=constants.FIT_LATENCY_SAMPLES)
        self.timeout = TimeoutFit(timeout_s) if timeout_s is not None and learn_in_flight else None

    def current(self) -> LearnedLimits:
        return LearnedLimits(
            rpm=self.rpm if self.learn_rate else None,
            in_flight=self.in_flight if self.learn_in_flight else None,
        )

    def stop_learning(self) -> None:
        """The provider stated its limits: they replace everything learned."""
        self.learn_rate = self.learn_in_flight = False
        self.rpm = self.in_flight = None
        self.timeout = None

    # ---- what the gateway reports ----------------------------------------------------------

    def on_request(self, max_tokens: int | None = None) -> None:
        """A request is sent: the rate served is measured from the first one."""
        if self._first_seen is None:
            self._first_seen = self._clock.now()
        if self.timeout is not None and max_tokens is not None:
            self.timeout.on_request(max_tokens)

    def on_success(
        self,
        latency_s: float,
        *,
        rate_bound: bool,
        completion_tokens: int | None = None,
        alone: bool = False,
    ) -> None:
        """An answer: `rate_bound` says the request waited for the learned rate; `alone`,
        that nothing else was in flight from its start to its end (its latency is then the
        server's service time for `completion_tokens`)."""
        now = self._clock.now()
        if self.timeout is not None:
            self.timeout.replied = True
            if alone and completion_tokens is not None:
                self.timeout.service.observe(latency_s, completion_tokens)
        if self._first_seen is None:
            self._first_seen = now
        if self.learn_rate:
            self._successes.append(now)
            if self.rpm is not None and rate_bound:
                self.rpm += self._rate_step(now)
        if self.learn_in_flight and self.in_flight is not None:
            self._recent.append(latency_s)
            if self.slow_start and self._window_cap is not None and self._fits_one_more():
                # One more per answer, up to double a window: growth spread over the round
                # trip as TCP's slow start does, never a burst of requests released at once.
                self.in_flight = min(
                    constants.LEARNED_IN_FLIGHT_MAX, self.in_flight + 1, 2 * self._window_cap
                )
            if now - latency_s < self._last_decrease:
                return  # sent before the last decrease: it says nothing of the cap in force
            self._window.append(latency_s)
            if len(self._window) >= max(constants.LATENCY_WINDOW_MIN_SAMPLES, self.in_flight):
                self._close_window(now)

    def on_rate_limited(self) -> None:
        """A 429: the rate and the cap back off together, once per episode; never below half
        the best rate served (a provider's sporadic 429s must not starve the run)."""
        now = self._clock.now()
        served = self._served_rpm(now)
        best = self._decayed(self._best, now)
        if best is None or served > best:
            self._best = (served, now)
            best = served
        if not self._may_decrease(now):
            return
        if self.learn_rate and served > 0:  # with no success yet, nothing says what to aim at
            base = served if self.rpm is None else min(self.rpm, served)
            floor = max(constants.LEARNED_RPM_MIN, constants.RATE_FLOOR_SHARE * best)
            self.rpm = max(floor, constants.RATE_DECREASE * base)
            self._ceiling = (base, now)
        self._shrink_in_flight()

    def on_timeout(self, waited_s: float | None = None, *, alone: bool = False) -> None:
        """A request that never came back after `waited_s`: the server is overloaded, shrink
        the cap. `alone`: it was sent with nothing else in flight, so a shorter cap cannot help
        and the timeout is too short for one request: raise it."""
        if waited_s is not None and self.learn_in_flight:
            self._recent.append(waited_s)
        if alone and waited_s is not None and self.timeout is not None:
            self.timeout.on_timeout_alone(waited_s)
        if self._may_decrease(self._clock.now()):
            self._shrink_in_flight()

    @property
    def effective_timeout_s(self) -> float | None:
        """The timeout requests are sent with now (None: no timeout known)."""
        return None if self.timeout is None else self.timeout.effective_s

    # ---- the arithmetic --------------------------------------------------------------------

    def _may_decrease(self, now: float) -> bool:
        if now - self._last_decrease < constants.DECREASE_COOLDOWN_S:
            return False
        self._last_decrease = now
        self.slow_start = False
        return True

    def _rate_step(self, now: float) -> float:
        step = constants.RATE_STEP_PER_SUCCESS
        if self.rpm is None or self._ceiling is None or self._ceiling[0] <= 0:
            return step
        return step * (1 + constants.RATE_PROBE_GAIN * abs(self.rpm / self._ceiling[0] - 1))

    @staticmethod
    def _decayed(figure: tuple[float, float] | None, now: float) -> float | None:
        if figure is None:
            return None
        value, when = figure
        return value * 0.5 ** ((now - when) / constants.RATE_CEILING_HALF_LIFE_S)

    def _served_rpm(self, now: float) -> float:
        """Successes per minute over the last few seconds (or since the first request)."""
        horizon = now - constants.RATE_MEASURE_WINDOW_S
        while self._successes and self._successes[0] < horizon:
            self._successes.popleft()
        first = self._first_seen if self._first_seen is not None else now
        span = min(constants.RATE_MEASURE_WINDOW_S, now - first)
        return len(self._successes) * 60.0 / span if span > 0 else 0.0

    def _fits_one_more(self) -> bool:
        """Whether one more request in flight still fits the timeout, by recent latency: on a
        one-slot server each one more adds a service time to every wait."""
        timeout = self.effective_timeout_s
        if timeout is None or not self._recent or self.in_flight is None:
            return True
        ordered = sorted(self._recent)
        p95 = ordered[min(len(ordered) - 1, int(constants.FIT_LATENCY_QUANTILE * len(ordered)))]
        return p95 * (self.in_flight + 1) / self.in_flight < timeout

    def _shrink_in_flight(self) -> None:
        if self.learn_in_flight and self.in_flight is not None:
            self.in_flight = max(1, math.floor(self.in_flight * constants.IN_FLIGHT_DECREASE))
            self._window.clear()

    def _close_window(self, now: float) -> None:
        median = statistics.median(self._window)
        self._window.clear()
        assert self.in_flight is not None
        if self._baseline_s is None or median < self._baseline_s:
            self._baseline_s = median
        if median > self._baseline_s * constants.LATENCY_TOLERANCE:
            # Queueing persists, noise does not: twice in a row, or once by far.
            self._flat_windows = 0
            self._congested_windows += 1
            clear = median >= self._baseline_s * constants.LATENCY_CLEAR_CONGESTION
            if (clear or self._congested_windows >= 2) and self._may_decrease(now):
                self._congested_windows = 0
                self._shrink_in_flight()
            return
        self._congested_windows = 0
        # Flat: the baseline follows slowly growing prompts (slower at a higher cap, where it
        # would follow a queue that grows with the cap).
        drift = constants.LATENCY_BASELINE_DRIFT / self.in_flight
        self._baseline_s = min(median, self._baseline_s * (1 + drift))
        self._flat_windows += 1
        if self.slow_start:
            self._window_cap = self.in_flight  # (grown answer by answer in on_success)
        elif self._flat_windows >= constants.IN_FLIGHT_PROBE_WINDOWS:
            self._flat_windows = 0
            if self._fits_one_more():
                self.in_flight = min(constants.LEARNED_IN_FLIGHT_MAX, self.in_flight + 1)
