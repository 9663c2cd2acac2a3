"""One gateway per (provider, model, base_url), owned once for every caller of that backend. It
composes the parts that each own one job: admission (engine/admission.py: limits, the in-flight
cap, the shared pause on 429, learned limits), the retry policy (engine/retry_policy.py) and
accounting (engine/accounting.py: tokens, cost, counters)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from rapport.config.constants import NO_SUCCESS_STOP_S, RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_MIN_S
from rapport.config.run import Price
from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.engine.accounting import GatewayStats, count_completion, count_failure
from rapport.engine.admission import Admission, Ticket
from rapport.engine.backend import Backend, label, simulated
from rapport.engine.budget import SpendMeter
from rapport.engine.clock import Clock, LoopClock
from rapport.engine.errors import BackendError
from rapport.engine.fail_fast import FailFast
from rapport.engine.learning import Learning
from rapport.engine.limits import GatewayLimits, MinuteBudget
from rapport.engine.retry_policy import RetryPolicy
from rapport.engine.types import ChatMessage, Completion, CompletionParams

__all__ = ["Gateway", "GatewayLimits", "GatewayStats"]  # the last two: where callers find them


class Gateway:
    """Wraps a backend with its budgets, cap and jittered retries that honour Retry-After.

    When the provider answers 429, every caller of this gateway pauses until the wait it asked
    for has passed (no 429 storm), then all resume. Pauses and retry waits go through `clock`
    (the event loop's by default), so a test can see every wait asked for.

    With `adaptive`, limits nobody configured or stated are learned (engine/learning.py):
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
        self.label = label(backend)
        # Each completion's cost comes from it; simulated backends cost nothing known.
        self.price = None if simulated(backend) else price
        clock = clock or LoopClock()
        self._clock = clock
        self.stats = GatewayStats()
        self.timeout_s = timeout_s  # the backend's configured timeout (None: none known)
        limits = limits or GatewayLimits()
        learning = None
        if adaptive and not limits.has_rates:  # a rate is learned only when none is configured
            learning = Learning(
                clock,
                self.label,
                learn_in_flight=limits.max_in_flight is None,
                timeout_s=timeout_s,
            )
        self._learning = learning
        self.admission = Admission(
            limits,
            clock,
            may_state=not simulated(backend),
            learned=learning,
            default_pause_s=backoff_min_s,
        )
        self.retry = RetryPolicy(
            self.label,
            self.stats,
            clock,
            max_retries=max_retries,
            backoff_min_s=backoff_min_s,
            backoff_max_s=backoff_max_s,
            no_success_stop_s=no_success_stop_s,
            redactor=redactor,
            timeout_s=lambda: self.effective_timeout_s,
        )

    @property
    def spend(self) -> SpendMeter | None:
        """The run's budget, when it has one (engine/budget.py): admission holds it."""
        return self.admission.spend

    @spend.setter
    def spend(self, meter: SpendMeter | None) -> None:
        self.admission.spend = meter

    @property
    def limits(self) -> GatewayLimits:
        """The limits configured, or stated by the provider once it has."""
        return self.admission.limits

    @property
    def effective_limits(self) -> GatewayLimits:
        """The limits in force now: configured or stated, else learned (display and stats)."""
        return self.admission.effective_limits

    @property
    def limits_source(self) -> str | None:
        """Where the rate limits in force come from: configured, stated (headers) or learned."""
        return self.admission.source

    @property
    def effective_timeout_s(self) -> float | None:
        """The timeout requests are sent with: the configured one, or raised to fit one request
        (None: the backend has none this gateway knows of)."""
        learning = self._learning
        if learning is not None and learning.timeout_s is not None:
            return learning.timeout_s
        return self.timeout_s

    @property
    def timeout_notice(self) -> str | None:
        """The line said once when the timeout was raised to fit one request."""
        return self._learning.notice if self._learning is not None else None

    @property
    def fail_fast(self) -> FailFast:
        return self.retry.fail_fast

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        """Complete, retrying retryable failures (engine/retry_policy.py); raises TurnFailed
        when retries run out."""
        return await self.retry.run(self._attempt, messages, params)

    async def _attempt(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        slots = self.admission.slots
        if slots is None:
            return await self._admitted(messages, params)
        # A slot first, then the pause and budgets: requests that queued for a slot are still
        # held to them when it frees (or a cap that grows would release them all at once).
        async with slots:
            return await self._admitted(messages, params)

    async def _admitted(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        """One call, admitted (budgets, pause, the run's budget reserved) and settled."""
        admission = self.admission
        ticket = await admission.admit(messages, params)
        try:
            completion = await self._call(messages, params, ticket)
        except BaseException:
            admission.release(ticket)
            raise
        admission.settle(ticket, completion)
        return completion

    async def _call(
        self, messages: Sequence[ChatMessage], params: CompletionParams, ticket: Ticket
    ) -> Completion:
        """One request to the backend, counted; what it says feeds admission and learning."""
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        nothing_else = stats.in_flight == 1  # in flight from this gateway when it starts
        learning = self._learning
        mark = None
        if learning is not None:
            mark = learning.start(nothing_else)
            timeout = learning.timeout_s
            if timeout is not None and timeout != self.timeout_s:  # raised to fit one request
                params = msgspec.structs.replace(params, timeout_s=timeout)
        started = self._clock.now()
        try:
            completion = await self.backend.complete(messages, params)
        except BackendError as error:
            self._failed(error, self._clock.now() - started, alone=nothing_else)
            raise
        finally:
            stats.in_flight -= 1
        if learning is not None:
            learning.succeeded(
                completion.latency_s,
                completion.completion_tokens,
                rate_bound=ticket.rate_bound,
                mark=mark,
            )
        return count_completion(stats, completion, self.price)

    def _failed(self, error: BackendError, waited_s: float, *, alone: bool) -> None:
        """A request failed: counted; a 429 pauses every caller; learning hears of it."""
        count_failure(self.stats, error.kind, waited_s)
        learning = self._learning
        if learning is None:
            self.admission.refused(error.kind, error.retry_after_s, error.limits)
            return
        # While the cap is learned, a timeout is backpressure: retried as a 429 is.
        if error.kind == "timeout" and learning.timed_out(error, waited_s, alone=alone):
            self.stats.backpressure_timeouts += 1
        self.admission.refused(error.kind, error.retry_after_s, error.limits)
        learning.failed(error)
        self.admission.follow_learned()

    def use_budgets(self, budgets: dict[str, MinuteBudget]) -> None:
        """Spend these budgets instead of the gateway's own (the same units): several
        processes sharing one provider limit lease it from one keeper (engine/leases.py)."""
        self.admission.use(budgets)

    async def aclose(self) -> None:
        await self.backend.aclose()
