"""Paired statistics for two models on the same scenarios: bootstrap intervals, Wilcoxon
signed-rank and paired t tests, effect size, McNemar's test on pass/fail (all from scipy)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import msgspec
import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
POWER = 0.80  # for the smallest effect this N can detect


class Interval(msgspec.Struct, frozen=True):
    low: float
    high: float


class PairedComparison(msgspec.Struct, frozen=True):
    """Candidate minus baseline over N paired scenarios. p-values are None where a test is
    undefined (fewer than two pairs, or every difference zero)."""

    n: int
    mean_difference: float
    difference_ci: Interval | None
    relative_change: float | None  # mean difference / baseline mean
    wilcoxon_statistic: float | None
    wilcoxon_p: float | None
    t_statistic: float | None
    t_p: float | None
    cohens_dz: float | None  # mean difference / SD of differences
    zero_differences: int
    smallest_detectable_dz: float | None  # at 80 % power, two-sided 5 %
    pass_both: int
    pass_baseline_only: int
    pass_candidate_only: int
    mcnemar_p: float | None  # exact, on the discordant pairs


def bootstrap_mean_ci(values: Sequence[float], seed: int) -> Interval | None:
    """Percentile bootstrap interval of the mean (None with fewer than two values)."""
    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    if np.all(data == data[0]):
        return Interval(float(data[0]), float(data[0]))
    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(float(result.confidence_interval.low), float(result.confidence_interval.high))


def smallest_detectable_effect(n: int) -> float | None:
    """The standardised paired effect (d_z) a two-sided 5 % test detects with 80 % power."""
    if n < 2:
        return None
    z = stats.norm.ppf(1 - (1 - CONFIDENCE) / 2) + stats.norm.ppf(POWER)
    return float(z / math.sqrt(n))


def compare_paired(
    baseline: Sequence[float],
    candidate: Sequence[float],
    baseline_passed: Sequence[bool],
    candidate_passed: Sequence[bool],
    seed: int,
) -> PairedComparison:
    """Paired comparison of per-scenario scores (same order on both sides)."""
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    diff = cand - base
    n = len(diff)
    zeros = int(np.sum(diff == 0))
    mean_diff = float(diff.mean()) if n else math.nan
    base_mean = float(base.mean()) if n else math.nan
    wilcoxon_stat = wilcoxon_p = t_stat = t_p = dz = None
    if n >= 2 and zeros < n:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small-sample and tie warnings: N is reported
            wilcoxon = stats.wilcoxon(cand, base)
            wilcoxon_stat, wilcoxon_p = float(wilcoxon.statistic), float(wilcoxon.pvalue)
            sd = float(diff.std(ddof=1))
            if sd > 0:
                ttest = stats.ttest_rel(cand, base)
                t_stat, t_p = float(ttest.statistic), float(ttest.pvalue)
                dz = mean_diff / sd
    both = sum(b and c for b, c in zip(baseline_passed, candidate_passed, strict=True))
    base_only = sum(b and not c for b, c in zip(baseline_passed, candidate_passed, strict=True))
    cand_only = sum(c and not b for b, c in zip(baseline_passed, candidate_passed, strict=True))
    discordant = base_only + cand_only
    mcnemar = float(stats.binomtest(cand_only, discordant, 0.5).pvalue) if discordant else None
    return PairedComparison(
        n=n,
        mean_difference=mean_diff,
        difference_ci=bootstrap_mean_ci(diff.tolist(), seed),
        relative_change=mean_diff / base_mean if n and base_mean else None,
        wilcoxon_statistic=wilcoxon_stat,
        wilcoxon_p=wilcoxon_p,
        t_statistic=t_stat,
        t_p=t_p,
        cohens_dz=dz,
        zero_differences=zeros,
        smallest_detectable_dz=smallest_detectable_effect(n),
        pass_both=both,
        pass_baseline_only=base_only,
        pass_candidate_only=cand_only,
        mcnemar_p=mcnemar,
    )
