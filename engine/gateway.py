"""One gateway per (provider, model, base_url): budgets, an in-flight cap, a shared pause on
429 and retries, owned once for every caller of that backend."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence

import anyio
import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_random_exponential,
)

from rapport.config.constants import NO_SUCCESS_STOP_S, RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_MIN_S
from rapport.config.prices import usage_cost
from rapport.config.run import Price
from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.engine.adaptive_limits import AdaptiveLimits, LearnedLimits
from rapport.engine.backend import Backend, label
from rapport.engine.budget import SpendMeter
from rapport.engine.clock import Clock, LoopClock
from rapport.engine.errors import (
    BackendError,
    ProviderUnreachable,
    RateLimitedTooLong,
    TimedOutTooLong,
    TurnFailed,
)
from rapport.engine.fail_fast import FailFast
from rapport.engine.limits import MinuteBudget, TokenEstimate, TokenEstimator
from rapport.engine.types import ChatMessage, Completion, CompletionParams, ReportedLimits

LATENCY_SAMPLES = 10_000
UNREACHABLE_AFTER_ATTEMPTS = 2  # connection failures before any success mean "down"
RATE_RETUNE_FRACTION = 0.05  # a learned rate replaces its budget when it moved this much
_TOKEN_BUDGETS = ("tokens", "input_tokens", "output_tokens")


class GatewayLimits(msgspec.Struct, frozen=True):
    """Per-minute budgets and a concurrency cap; None means unlimited (or learned from the
    provider's rate-limit headers when no rate is given at all)."""

    rpm: int | None = None
    tpm: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None
    max_in_flight: int | None = None

    @property
    def has_rates(self) -> bool:
        return any((self.rpm, self.tpm, self.input_tpm, self.output_tpm))


class GatewayStats(msgspec.Struct):
    """Counters of one gateway, read by the progress display and stored per run."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    timeouts: int = 0  # calls given up on at timeout_s: a reply that never came
    backpressure_timeouts: int = 0  # of those, retried as a 429 is (learned in-flight cap)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it
    cost_usd: float = 0.0  # summed per call at the gateway's price (0 without one)
    in_flight: int = 0
    latencies_s: deque[float] = msgspec.field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def latency_percentile(self, fraction: float) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, BackendError) and error.retryable


def _is_backpressure(error: BaseException | None) -> bool:
    return isinstance(error, BackendError) and error.backpressure


class Gateway:
    """Wraps a backend with its budgets, cap and jittered retries that honour Retry-After.

    When the provider answers 429, every caller of this gateway pauses until the wait it asked
    for has passed (no 429 storm), then all resume. Pauses and retry waits go through `clock`
    (the event loop's by default), so a test can see every wait asked for.

    With `adaptive`, limits nobody configured or stated are learned (engine/adaptive_limits.py):
    a rate from 429s and an in-flight cap from latency. While the cap is learned, a timeout is
    backpressure as a 429 is, and `timeout_s` (the backend's) is raised when one request needs
    more (said once: `timeout_notice`).
    """

    def __init__(
        self,
        backend: Backend,
        limits: GatewayLimits | None = None,
        *,
        max_retries: int = 0,
        backoff_min_s: float = RETRY_BACKOFF_MIN_S,
        backoff_max_s: float = RETRY_BACKOFF_MAX_S,
        clock: Clock | None = None,
        adaptive: bool = False,
        no_success_stop_s: float = NO_SUCCESS_STOP_S,
        redactor: Redactor = PATTERNS_ONLY,
        price: Price | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.backend = backend
        # Each completion's cost comes from it; simulated backends cost nothing known.
        self.price = None if backend.simulated else price
        self._redact = redactor  # errors raised to the user may quote a provider's echoed key
        self._clock = clock or LoopClock()
        self.label = label(backend)
        self.stats = GatewayStats()
        self.limits = limits or GatewayLimits()
        self._budgets: dict[str, MinuteBudget] = {}
        self._apply(self.limits)
        self._learn_limits = not self.limits.has_rates
        self._meter()
        self._configured_rates = self.limits.has_rates
        cap = self.limits.max_in_flight
        self._in_flight = anyio.CapacityLimiter(cap) if cap else None
        self.timeout_s = timeout_s  # the backend's configured timeout (None: none known)
        self._adaptive = self._adaptive_limits() if adaptive else None
        self.timeout_notice: str | None = None  # set once, when the timeout is first raised
        self._starts = 0  # requests sent so far: whether another started while one ran
        self._behind_timeout = False  # a timed-out request may still keep the server busy
        self._learned_rate: MinuteBudget | None = None
        self._no_success_stop_s = no_success_stop_s
        self._last_success_at: float | None = None
        self._estimator = TokenEstimator()
        self._token_debt = 0.0
        self._paused_until = 0.0
        self._max_retries = max_retries
        self._backoff = wait_random_exponential(multiplier=backoff_min_s, max=backoff_max_s)
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self.fail_fast = FailFast(self.label, redactor)
        self.spend: SpendMeter | None = None  # the run's budget, when it has one (engine/budget.py)

    def _apply(self, limits: GatewayLimits, *, start_full: bool = False) -> None:
        for name, per_minute in (
            ("requests", limits.rpm),
            ("tokens", limits.tpm),
            ("input_tokens", limits.input_tpm),
            ("output_tokens", limits.output_tpm),
        ):
            if per_minute:
                self._budgets[name] = MinuteBudget(per_minute, start_full=start_full)
        self._meter()

    def _meter(self) -> None:
        """Count prompt characters and estimate tokens only where they can matter: a token
        budget, or one a real provider may still state (an instant simulator's turns then
        skip the per-call sum over the whole history)."""
        self._metered = any(name in self._budgets for name in _TOKEN_BUDGETS) or (
            getattr(self, "_learn_limits", True) and not self.backend.simulated
        )

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        """Complete, retrying retryable failures; raises TurnFailed when retries run out.

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
            return await self._attempt(messages, params)
        except BackendError as error:
            if not error.retryable or give_up(error):
                self.stats.failed += 1
                self.fail_fast.record(error, self.stats.succeeded)
                raise TurnFailed(error.kind, str(error), 1) from error
            first_failure = error
        attempts = 1
        self.stats.retries += 1
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
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    self._check_reachable(last_failure, attempts)
                    try:
                        completion = await self._attempt(messages, params)
                        return msgspec.structs.replace(
                            completion, attempts=attempts, latency_s=self._clock.now() - started
                        )
                    except BackendError as error:
                        last_failure = error
                        raise
        except BackendError as error:
            self.stats.failed += 1
            self.fail_fast.record(error, self.stats.succeeded)
            raise TurnFailed(error.kind, str(error), attempts) from error
        raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

    def _check_progress(self, error: BackendError) -> None:
        """Stop the run when the gateway as a whole has had no success for too long."""
        since = self._last_success_at
        waited = 0.0 if since is None else self._clock.now() - since
        if waited <= self._no_success_stop_s:
            return
        if error.kind == "timeout":
            timeout = self.effective_timeout_s
            after = "" if timeout is None else f" after {timeout:g} s"
            raise TimedOutTooLong(
                f"{self.label}: every request timed out{after} for {waited:.0f} s with no "
                "success; stopped (run again to resume)"
            )
        raise RateLimitedTooLong(
            f"{self.label}: every request answered 429 (rate limited) for {waited:.0f} s "
            "with no success; stopped (run again to resume)"
        )

    def _check_reachable(self, error: BackendError, attempts: int) -> None:
        """A provider that has never answered and refuses connections is down: stop the run."""
        if (
            error.kind == "connection"
            and self.stats.succeeded == 0
            and attempts > UNREACHABLE_AFTER_ATTEMPTS
        ):
            raise ProviderUnreachable(
                self._redact(f"{self.label}: cannot reach the provider ({error})")
            )

    async def _budgeted_call(
        self, messages: Sequence[ChatMessage], params: CompletionParams, rate_bound: bool = False
    ) -> Completion:
        """`_call`, held to the run's budget when it has one: the call's worst case is reserved
        before it starts (BudgetReached when it does not fit), then settled to its cost."""
        spend = self.spend
        if spend is None:
            return await self._call(messages, params, rate_bound)
        reservation = spend.reserve(messages, params)
        completion = None
        try:
            completion = await self._call(messages, params, rate_bound)
        finally:
            spend.settle(reservation, completion)
        return completion

    async def _attempt(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        if self._in_flight is None:
            return await self._admitted(messages, params)
        # A slot first, then the pause and budgets: requests that queued for a slot are still
        # held to them when it frees (or a cap that grows would release them all at once).
        async with self._in_flight:
            return await self._admitted(messages, params)

    async def _admitted(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        # Every step that has nothing to do is skipped without an await: this runs per turn.
        if self._paused_until:
            await self._wait_out_pause()
        metered = self._metered
        if metered:
            prompt_chars = sum(len(m.content) for m in messages)
            estimate = self._estimator.estimate(prompt_chars, params.max_tokens)
            await self._acquire(estimate)
        elif self._budgets:  # a request budget only
            await self._budgets["requests"].acquire(1)
        rate_bound = False
        if self._learned_rate is not None:
            rate_bound = await self._acquire_learned_rate()
        if self._adaptive is not None:
            self._adaptive.on_request(params.max_tokens)
        completion = await self._budgeted_call(messages, params, rate_bound)
        if metered:
            self._reconcile(estimate, prompt_chars, completion)
        elif self._learn_limits and completion.limits is not None:
            self._adopt(completion.limits)
        if self._adaptive is not None:
            self._follow_learned()
        return completion

    async def _call(
        self, messages: Sequence[ChatMessage], params: CompletionParams, rate_bound: bool = False
    ) -> Completion:
        """One request to the backend, counted; what it says feeds the learned limits
        (`rate_bound`: it waited for the learned rate)."""
        self.stats.requests += 1
        self.stats.in_flight += 1
        nothing_else = self.stats.in_flight == 1  # in flight from this gateway when it starts
        behind_timeout, self._behind_timeout = self._behind_timeout, False
        self._starts += 1
        starts = self._starts
        timeout = self._raised_timeout()
        if timeout is not None:
            params = msgspec.structs.replace(params, timeout_s=timeout)
        started = self._clock.now()
        try:
            completion = await self.backend.complete(messages, params)
        except BackendError as error:
            if error.kind == "rate_limited":
                self.stats.rate_limited += 1
                self._pause(error.retry_after_s)
            elif error.kind == "timeout":  # its full time counts in the latencies
                self.stats.timeouts += 1
                waited = self._clock.now() - started
                self.stats.latencies_s.append(waited)
                self._behind_timeout = True
                self._timed_out(error, waited, alone=nothing_else)
            self._learn_from_failure(error)
            raise
        finally:
            self.stats.in_flight -= 1
        if self._adaptive is not None:  # alone: its latency is the server's service time
            alone = nothing_else and not behind_timeout and self._starts == starts
            self._adaptive.on_success(
                completion.latency_s,
                rate_bound=rate_bound,
                completion_tokens=completion.completion_tokens,
                alone=alone,
            )
            self._say_if_timeout_raised()
        self._last_success_at = self._clock.now()
        self.stats.succeeded += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        self.stats.latencies_s.append(completion.latency_s)
        if completion.cache_read_tokens or completion.cache_write_tokens:
            self.stats.cache_read_tokens += completion.cache_read_tokens
            self.stats.cache_write_tokens += completion.cache_write_tokens
        if self.price is not None:
            cost = usage_cost(
                self.price,
                completion.prompt_tokens,
                completion.completion_tokens,
                cache_read_tokens=completion.cache_read_tokens,
                cache_write_tokens=completion.cache_write_tokens,
            )
            self.stats.cost_usd += cost
            completion = msgspec.structs.replace(completion, cost_usd=cost)
        return completion

    async def _acquire(self, estimate: TokenEstimate) -> None:
        budgets = self._budgets
        if not budgets:
            return
        if "requests" in budgets:
            await budgets["requests"].acquire(1)
        if "tokens" in budgets:
            charge = estimate.total + self._token_debt
            self._token_debt = min(charge, 0.0)  # unused credit carries over
            await budgets["tokens"].acquire(max(charge, 0.0))
        if "input_tokens" in budgets:
            await budgets["input_tokens"].acquire(estimate.prompt)
        if "output_tokens" in budgets:
            await budgets["output_tokens"].acquire(estimate.completion)

    def _reconcile(
        self, estimate: TokenEstimate, prompt_chars: int, completion: Completion
    ) -> None:
        """Charge the difference between estimated and reported tokens to the next call."""
        actual = completion.prompt_tokens + completion.completion_tokens
        self._token_debt += actual - estimate.total
        self._estimator.learn(prompt_chars, completion.prompt_tokens, completion.completion_tokens)
        if self._learn_limits and completion.limits is not None:
            self._adopt(completion.limits)

    def _adopt(self, reported: ReportedLimits, *, after_429: bool = False) -> None:
        """Use the limits the provider announced (in any response, 429s included), once,
        when the user configured none; they replace whatever was being learned."""
        learned = GatewayLimits(
            rpm=reported.requests,
            tpm=reported.tokens,
            input_tpm=reported.input_tokens,
            output_tpm=reported.output_tokens,
            max_in_flight=self.limits.max_in_flight,
        )
        if learned.has_rates:
            self.limits = learned
            self._learn_limits = False
            self._apply(learned, start_full=after_429)
            if self._adaptive is not None:
                self._adaptive.stop_learning()
                self._follow_learned()

    # ---- learned limits (engine/adaptive_limits.py) ----------------------------------------

    def _adaptive_limits(self) -> AdaptiveLimits | None:
        """Learn the rate when none is configured, and the in-flight cap when neither it nor
        a rate is: a stated rate is a hosted API's limit, which latency does not describe."""
        learn_rate = not self.limits.has_rates
        learn_in_flight = learn_rate and self.limits.max_in_flight is None
        if not learn_rate:
            return None
        adaptive = AdaptiveLimits(
            self._clock, learn_in_flight=learn_in_flight, timeout_s=self.timeout_s
        )
        if adaptive.in_flight is not None:
            self._in_flight = anyio.CapacityLimiter(adaptive.in_flight)
        return adaptive

    @property
    def effective_limits(self) -> GatewayLimits:
        """The limits in force now: configured or stated, else learned (display and stats)."""
        learned = self._adaptive.current() if self._adaptive is not None else None
        if learned is None or (learned.rpm is None and learned.in_flight is None):
            return self.limits
        return msgspec.structs.replace(
            self.limits,
            rpm=self.limits.rpm or (None if learned.rpm is None else round(learned.rpm)),
            max_in_flight=self.limits.max_in_flight or learned.in_flight,
        )

    @property
    def limits_source(self) -> str | None:
        """Where the rate limits in force come from: configured, stated (headers) or learned."""
        if self._configured_rates:
            return "configured"
        if self.limits.has_rates:
            return "stated"
        if self._adaptive is not None and self._adaptive.current() != LearnedLimits(None, None):
            return "learned"
        return None

    async def _acquire_learned_rate(self) -> bool:
        """Wait for the learned rate, if one is known; True when it held the request back."""
        budget = self._learned_rate
        if budget is None:
            return False
        bound = budget.would_wait()
        await budget.acquire(1)
        while self._learned_rate is not None and budget is not self._learned_rate:
            budget = self._learned_rate  # retuned while we waited: pass the one in force too,
            await budget.acquire(1)  # or old and new buckets would each let their rate through
        return bound

    def _learn_from_failure(self, error: BackendError) -> None:
        if self._learn_limits and error.limits is not None:
            self._adopt(error.limits, after_429=error.kind == "rate_limited")
        if self._adaptive is None:
            return
        if error.kind == "rate_limited":
            self._adaptive.on_rate_limited()
        elif error.kind == "timeout" and not error.backpressure:
            self._adaptive.on_timeout()  # (a backpressure timeout told it already)
        self._follow_learned()

    def _raised_timeout(self) -> float | None:
        """The timeout to send a request with when it differs from the backend's own."""
        timeout = self.effective_timeout_s
        return timeout if timeout is not None and timeout != self.timeout_s else None

    @property
    def effective_timeout_s(self) -> float | None:
        """The timeout requests are sent with: the configured one, or raised to fit one request
        (None: the backend has none this gateway knows of)."""
        if self._adaptive is not None and self._adaptive.effective_timeout_s is not None:
            return self._adaptive.effective_timeout_s
        return self.timeout_s

    def _timed_out(self, error: BackendError, waited_s: float, *, alone: bool) -> None:
        """While the in-flight cap is learned, a timeout is backpressure (the cap shrinks, the
        timeout grows when the request was alone), retried as a 429 is. A request that always
        runs past the bounded timeout is retried while others succeed; once nothing succeeds,
        `no_success_stop_s` stops the run with one line."""
        adaptive = self._adaptive
        if adaptive is None or not adaptive.learn_in_flight:
            return
        adaptive.on_timeout(waited_s, alone=alone)
        error.backpressure = True
        self.stats.backpressure_timeouts += 1
        self._say_if_timeout_raised()

    def _say_if_timeout_raised(self) -> None:
        fit = self._adaptive.timeout if self._adaptive is not None else None
        if self.timeout_notice is None and fit is not None and fit.raised:
            self.timeout_notice = fit.notice(self.label)

    def _follow_learned(self) -> None:
        """Apply what the controllers hold now to the in-flight cap and the rate budget."""
        assert self._adaptive is not None
        learned = self._adaptive.current()
        if self._in_flight is not None and self.limits.max_in_flight is None:
            cap = learned.in_flight if learned.in_flight is not None else math.inf
            if self._in_flight.total_tokens != cap:
                self._in_flight.total_tokens = cap
        if learned.rpm is None:
            self._learned_rate = None
        elif self._learned_rate is None or (
            abs(learned.rpm - self._learned_rate.per_minute)
            >= RATE_RETUNE_FRACTION * self._learned_rate.per_minute
        ):  # a new bucket per real change (aiolimiter's rate is fixed at creation)
            self._learned_rate = MinuteBudget(max(1, round(learned.rpm)), start_full=True)

    def _pause(self, retry_after_s: float | None) -> None:
        wait = retry_after_s if retry_after_s is not None else self._backoff_min_s
        self._paused_until = max(self._paused_until, self._clock.now() + wait)

    async def _wait_out_pause(self) -> None:
        if not self._paused_until:  # never rate limited: skip reading the clock
            return
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (delay := self._paused_until - self._clock.now()) > 0:
            await self._clock.sleep(delay)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        # tenacity counts from the second attempt overall: one attempt came before it.
        return self._wait_after(error, state.attempt_number + 1)

    def _wait_after(self, error: BaseException | None, failed_attempts: int) -> float:
        """Honour the provider's Retry-After, else jittered exponential backoff."""
        asked = error.retry_after_s if isinstance(error, BackendError) else None
        if asked is not None:
            return asked + random.uniform(0, self._backoff_min_s)
        state = RetryCallState(None, None, (), {})
        state.attempt_number = failed_attempts
        return min(self._backoff(state), self._backoff_max_s)

    def _count_retry(self, _state: RetryCallState) -> None:
        self.stats.retries += 1

    def use_budgets(self, budgets: dict[str, MinuteBudget]) -> None:
        """Spend these budgets instead of the gateway's own (the same units): several
        processes sharing one provider limit lease it from one keeper (engine/leases.py)."""
        self._budgets.update(budgets)
        self._meter()

    async def aclose(self) -> None:
        await self.backend.aclose()
