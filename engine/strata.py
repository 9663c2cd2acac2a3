"""Strata of a plan, for `rapport generate --until-passing N`: what share of the passing set
each kind of scenario should be, and how many passing conversations of each that makes.

A scenario's stratum is its primary topic category (its first topic: always drawn by the
category weights) and its primary flaw category (the flaw with role `primary`, else its first
flaw, else `none`), written `topic/flaw`. The SQL twin that labels stored scenarios is the view
`scenario_strata` (store/views.sql); both follow `engine.plan`'s sampling, so a stratum's weight
here is the probability that `sample_scenario` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from rapport.config.domain import Domain
from rapport.config.shards import Shard

NO_FLAW = "none"


def stratum_label(topic_category: str, flaw_category: str) -> str:
    return f"{topic_category}/{flaw_category}"


def stratum_weights(domain: Domain) -> dict[str, float]:
    """Each stratum's probability under the plan's sampling: topic and flaw are drawn
    independently, so the product of the topic category's weight (normalised) and the flaw
    category's share (`none_rate` for none, the rest split evenly over `primary_from`, or over
    `secondary_from` when there is no primary)."""
    topics = {name: c.weight for name, c in domain.topics.categories.items()}
    total = sum(topics.values())
    policy = domain.flaws.policy
    flawed_from = policy.primary_from or policy.secondary_from
    flaws: dict[str, float] = {}
    if flawed_from:
        flaws[NO_FLAW] = policy.none_rate
        for category in flawed_from:
            flaws[category] = flaws.get(category, 0.0) + (1 - policy.none_rate) / len(flawed_from)
    else:
        flaws[NO_FLAW] = 1.0
    return {
        stratum_label(topic, flaw): topic_weight / total * flaw_weight
        for topic, topic_weight in topics.items()
        for flaw, flaw_weight in flaws.items()
        if flaw_weight > 0 and topic_weight > 0
    }


def quotas(weights: Mapping[str, float], target: int) -> dict[str, int]:
    """Whole quotas that sum to exactly `target`, each `target × weight` rounded by largest
    remainder (so no quota is off its share by a whole conversation or more)."""
    total = sum(weights.values())
    exact = {name: target * weight / total for name, weight in weights.items()}
    whole = {name: math.floor(share) for name, share in exact.items()}
    left = target - sum(whole.values())
    by_remainder = sorted(exact, key=lambda name: (whole[name] - exact[name], name))
    for name in by_remainder[:left]:
        whole[name] += 1
    return whole


def shard_quotas(whole: Mapping[str, int], shard: Shard) -> dict[str, int]:
    """Shard K of N's part of each stratum's quota: the quota split evenly, its remainder
    going to shards in turn (dealt round-robin across strata, so every shard's target is the
    whole's divided by the shard count, within one). The shards' quotas add up to the whole's."""
    parts: dict[str, int] = {}
    start = 0  # the shard the next remainder goes to: remainders are dealt round-robin
    for name, quota in sorted(whole.items()):
        base, extra = divmod(quota, shard.count)
        parts[name] = base + int((shard.index - start) % shard.count < extra)
        start = (start + extra) % shard.count
    return parts
