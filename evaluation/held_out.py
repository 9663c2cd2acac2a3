"""Held-out scenarios: drawn from the domain with a seed stream of their own (so never a
training scenario), stored marked `held_out`, and copied once per side of an evaluation."""

from __future__ import annotations

import msgspec

from rapport.config.backend_settings import flat_form
from rapport.config.domain import Domain
from rapport.config.run import BackendConfig
from rapport.config.scenario import Scenario
from rapport.engine.plan import sample_scenarios
from rapport.engine.seeding import derive_seed, short_hash

HELD_OUT_SALT = "held-out"


def held_out_plan_id(domain: Domain, seed: int, turns: int | None) -> str:
    return "heldout-" + short_hash(HELD_OUT_SALT, domain.fingerprint(), seed, turns)


def held_out_scenarios(domain: Domain, seed: int, turns: int | None, count: int) -> list[Scenario]:
    """Scenarios `0..count-1` of the held-out plan; scenario i depends only on (seed, i)."""
    plan_id = held_out_plan_id(domain, seed, turns)
    stream_seed = derive_seed(seed, HELD_OUT_SALT)
    return list(sample_scenarios(domain, plan_id, stream_seed, 0, count, turns))


def eval_id_for(
    held_out_plan: str, baseline: BackendConfig, candidate: BackendConfig, user: BackendConfig
) -> str:
    """The same scenarios, sides and user simulator are the same eval (so it resumes)."""

    def encode(settings: BackendConfig) -> bytes:
        return msgspec.json.encode(flat_form(settings))

    return "eval-" + short_hash(
        held_out_plan, encode(baseline), encode(candidate), encode(user), length=10
    )


def side_plan_id(eval_id: str, side: str) -> str:
    return f"{eval_id}-{side}"


def side_scenario(scenario: Scenario, eval_id: str, side: str) -> Scenario:
    """The held-out scenario as one side plays it: its own id, the same seed and content (so
    the user simulator draws the same way on both sides)."""
    plan_id = side_plan_id(eval_id, side)
    return msgspec.structs.replace(
        scenario, scenario_id=f"{plan_id}-{scenario.index:07d}", plan_id=plan_id
    )
