"""Counters of a run: conversations done and active, turns, and per-minute rates."""

from __future__ import annotations

import time
from collections import deque

import msgspec

from rapport.config.constants import RATE_WINDOW_S
from rapport.store.store_wait import StoreWait


class RateWindow:
    """Sums over the last `window_s` seconds, kept in one-second buckets (constant memory)."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._buckets: deque[list[float]] = deque()

    def add(self, amount: float, now: float | None = None) -> None:
        second = int(now if now is not None else time.monotonic())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += amount
        else:
            self._buckets.append([second, amount])
        self._trim(second)

    def per_minute(self, started: float, now: float | None = None) -> float:
        now = now if now is not None else time.monotonic()
        self._trim(int(now))
        span = min(self._window_s, max(now - started, 1.0))
        return sum(amount for _, amount in self._buckets) * 60.0 / span

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window_s:
            self._buckets.popleft()


class JudgingProgress(msgspec.Struct):
    """Judging inside a run, counted in conversation-judge pairs (one per conversation with one
    judge); kept by the judge pool as it works, shown live beside the conversations."""

    waiting: int = 0  # completed or read from the store, not yet taken by a judge worker
    active: int = 0  # being judged now
    judged: int = 0
    failed_conversations: int = 0  # judged with at least one criterion failed
    failed: int = 0  # criteria failed (asked again next run)
    answered: int = 0  # criteria asked and answered


class PassingProgress(msgspec.Struct):
    """`generate --until-passing`: where the target stands, kept by its admission as it
    rereads the store; shown live beside the conversations."""

    target: int
    passing: int = 0  # counted toward the target (at most each stratum's quota)
    passed: int = 0  # every judged conversation that passes (surplus included)
    judged: int = 0
    in_flight: int = 0  # admitted, not yet judged (or failed)
    drawn: int = 0  # scenarios of the plan looked at (played or skipped)
    strata: int = 0
    strata_full: int = 0  # strata at their quota: no longer started
    passing_at_start: int | None = None  # what earlier runs had made pass (the first reread)

    @property
    def yield_share(self) -> float | None:
        return self.passed / self.judged if self.judged else None

    def eta_s(self, elapsed_s: float) -> float | None:
        """At the pace this run has made conversations pass so far."""
        gained = self.passing - (self.passing_at_start or 0)
        if gained <= 0 or elapsed_s <= 0:
            return None
        return (self.target - self.passing) * elapsed_s / gained


class RunProgress(msgspec.Struct):
    """What the progress display shows; updated by conversations on the event loop."""

    total: int
    already_complete: int = 0
    done: int = 0
    failed: int = 0
    active: int = 0
    turns: int = 0
    truncated: int = 0  # turns kept although cut by the token budget
    tokens: int = 0
    started: float = msgspec.field(default_factory=time.monotonic)
    requests_window: RateWindow = msgspec.field(default_factory=RateWindow)
    tokens_window: RateWindow = msgspec.field(default_factory=RateWindow)
    store_wait: StoreWait | None = None  # set by the store while its file is held elsewhere
    judging: JudgingProgress | None = None  # set when the run judges
    passing: PassingProgress | None = None  # set by `--until-passing`

    def record_turn(self, tokens: int, truncated: bool = False) -> None:
        self.turns += 1
        self.truncated += truncated
        self.tokens += tokens
        self.requests_window.add(1)
        self.tokens_window.add(tokens)

    def note_store_wait(self, wait: StoreWait | None) -> None:
        self.store_wait = wait

    @property
    def finished(self) -> int:
        return self.already_complete + self.done + self.failed

    def eta_s(self) -> float | None:
        elapsed = time.monotonic() - self.started
        if self.passing is not None:  # --until-passing: the target, not the plan, decides
            return self.passing.eta_s(elapsed)
        handled = self.done + self.failed
        remaining = self.total - self.finished
        if handled == 0 or elapsed <= 0:
            return None
        return remaining * elapsed / handled
