"""Agreement between two judges on the same items: percent agreement and Cohen's kappa."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec


class Agreement(msgspec.Struct, frozen=True):
    items: int
    percent_agreement: float
    kappa: float | None  # None when undefined (both judges always gave the same single label)


def agreement(first: Sequence[str], second: Sequence[str]) -> Agreement:
    """κ = (p_o − p_e) / (1 − p_e), with p_e from each judge's own label frequencies."""
    if len(first) != len(second):
        raise ValueError("both judges must label the same items")
    items = len(first)
    if items == 0:
        return Agreement(0, 0.0, None)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / items
    counts_first, counts_second = Counter(first), Counter(second)
    expected = sum(counts_first[label] * counts_second[label] for label in counts_first) / items**2
    kappa = None if expected == 1.0 else (observed - expected) / (1.0 - expected)
    return Agreement(items, observed, kappa)
