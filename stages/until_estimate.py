"""`rapport generate --until-passing N --estimate`: how many scenarios are still to play (and to
draw) to reach the target, and what playing them would cost, before any call.

A stratum's yield is the share of its judged conversations that pass, once it has
UNTIL_PASSING_MIN_JUDGED judged; else the corpus's overall yield; with nothing judged, 100 %
(said so: the figure is then a floor). Scenarios to play: for each stratum, what its quota
still lacks divided by its yield. Scenarios to draw: the stratum that needs the most draws for
its weight decides (skipped scenarios are drawn too). The cost is `estimate_run`'s for that
many fresh scenarios of the plan, after those already stored; judging is not included.
"""

from __future__ import annotations

import math
from contextlib import closing
from pathlib import Path

import msgspec

from rapport.config.constants import UNTIL_PASSING_MIN_JUDGED
from rapport.config.loader import load_domain
from rapport.config.run import RunConfig
from rapport.config.shards import WHOLE_PLAN
from rapport.config.sides import judged_sides
from rapport.engine.plan import plan_id_for
from rapport.engine.strata import quotas, shard_quotas, stratum_weights
from rapport.stages.estimate import Estimate, estimate_run
from rapport.stages.generate import GenerateRequest
from rapport.store.database import connect
from rapport.store.passing import stratum_counts


class StratumNeed(msgspec.Struct, frozen=True):
    stratum: str
    quota: int
    passing: int  # counted so far
    yield_share: float
    yield_source: str  # measured | corpus | assumed
    to_play: int | None  # None: its yield is 0, it cannot be reached


class PassingEstimate(msgspec.Struct, frozen=True):
    target: int
    passing: int
    to_play: int  # scenarios still to play, the strata that can be reached
    to_draw: int  # scenarios of the plan still to draw (played or skipped)
    assumed_full_yield: bool  # nothing judged yet: every conversation assumed to pass
    strata: tuple[StratumNeed, ...]
    cost: Estimate  # of playing `to_play` fresh scenarios


def estimate_until_passing(settings: RunConfig, request: GenerateRequest) -> PassingEstimate:
    """The estimate (see the module docstring); reads the database read-only, if it exists."""
    assert request.until_passing is not None
    domain = load_domain(Path(settings.domain) if settings.domain else None)
    shard = request.shard or WHOLE_PLAN
    plan_id = plan_id_for(domain, settings.seed, settings.turns)
    weights = stratum_weights(domain)
    wanted = shard_quotas(quotas(weights, request.until_passing), shard)
    counts: dict[str, tuple[int, int]] = {}
    stored = 0
    if request.db.exists():
        with closing(connect(request.db, read_only=True)) as conn:
            sides = "user" in judged_sides(domain)
            counts = stratum_counts(conn, plan_id, request.count, shard, both_sides=sides)
            row = conn.execute(
                "SELECT coalesce(max(scenario_index) + 1, 0) FROM scenarios WHERE plan_id = ?",
                [plan_id],
            ).fetchone()
            stored = int(row[0]) if row else 0
    judged = sum(j for j, _ in counts.values())
    overall = sum(p for _, p in counts.values()) / judged if judged else None
    needs = []
    draws = 0.0
    for name in sorted(wanted, key=lambda n: (-weights[n], n)):
        stratum_judged, stratum_passing = counts.get(name, (0, 0))
        if stratum_judged >= UNTIL_PASSING_MIN_JUDGED:
            share, source = stratum_passing / stratum_judged, "measured"
        elif overall is not None:
            share, source = overall, "corpus"
        else:
            share, source = 1.0, "assumed"
        lacking = wanted[name] - min(stratum_passing, wanted[name])
        to_play = math.ceil(lacking / share) if share > 0 else (0 if not lacking else None)
        if to_play:
            draws = max(draws, to_play / weights[name])
        needs.append(
            StratumNeed(name, wanted[name], wanted[name] - lacking, share, source, to_play)
        )
    to_play_total = sum(n.to_play or 0 for n in needs)
    first = max(stored, 0)
    indices = shard.indices(first, first + to_play_total * shard.count)
    cost = estimate_run(settings, request.count, request.db, domain=domain, indices=indices)
    return PassingEstimate(
        target=sum(wanted.values()),
        passing=sum(n.passing for n in needs),
        to_play=to_play_total,
        to_draw=math.ceil(draws),
        assumed_full_yield=judged == 0,
        strata=tuple(needs),
        cost=cost,
    )
