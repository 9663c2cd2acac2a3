"""Seeded sampling of scenarios: same domain and seed, same plan, scenario by scenario."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from rapport.config.domain import Domain
from rapport.config.scenario import FlawAssignment, Persona, Scenario, TopicSeed
from rapport.engine.seeding import derive_seed, short_hash

_DISTINCT_DRAW_ATTEMPTS = 20


def plan_id_for(domain: Domain, seed: int, turns: int | None) -> str:
    """The identity of a plan: a changed domain, seed or fixed length is a different plan."""
    return short_hash(domain.fingerprint(), seed, turns)


def scenario_id_for(plan_id: str, index: int) -> str:
    return f"{plan_id}-{index:07d}"


def sample_scenarios(
    domain: Domain, plan_id: str, seed: int, start: int, stop: int, turns: int | None = None
) -> Iterator[Scenario]:
    """Scenarios `start..stop-1` of a plan; each depends only on (seed, index), never on order."""
    for index in range(start, stop):
        yield sample_scenario(domain, plan_id, seed, index, turns)


def sample_scenario(
    domain: Domain, plan_id: str, seed: int, index: int, turns: int | None = None
) -> Scenario:
    scenario_seed = derive_seed(seed, index)
    rng = random.Random(scenario_seed)
    persona = _persona(domain, rng)
    topics = _topics(domain, rng)
    flaws = _flaws(domain, rng)
    target = turns if turns is not None else _target_turns(domain, rng)
    return Scenario(
        scenario_id=scenario_id_for(plan_id, index),
        plan_id=plan_id,
        index=index,
        seed=scenario_seed,
        persona=persona,
        topics=topics,
        flaws=flaws,
        target_turns=target,
    )


def weighted_choice(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _persona(domain: Domain, rng: random.Random) -> Persona:
    config = domain.personas
    name = rng.choice(config.names)
    attributes = {attr: weighted_choice(rng, values) for attr, values in config.attributes.items()}
    traits = tuple(rng.sample(config.traits.pool, rng.randint(*config.traits.count)))
    styles = config.writing_style
    style_weights = styles.weights
    if styles.by_attribute is not None:
        style_weights = styles.overrides.get(attributes[styles.by_attribute], style_weights)
    style = weighted_choice(rng, style_weights)
    return Persona(
        name=name,
        attributes=attributes,
        traits=traits,
        writing_style=style,
        word_limit=styles.word_limits[style],
        cooperation=dict(config.cooperation),
    )


def _topics(domain: Domain, rng: random.Random) -> tuple[TopicSeed, ...]:
    config = domain.topics
    category_weights = {name: c.weight for name, c in config.categories.items()}
    wanted = rng.randint(*config.per_persona)
    chosen: dict[tuple[str, str], TopicSeed] = {}
    for _ in range(wanted * _DISTINCT_DRAW_ATTEMPTS):
        if len(chosen) == wanted:
            break
        category = weighted_choice(rng, category_weights)
        subtopics = config.categories[category].subtopics
        subtopic = rng.choice(list(subtopics))
        difficulty = weighted_choice(rng, config.difficulty)
        if (category, subtopic) not in chosen:
            chosen[category, subtopic] = TopicSeed(
                category, subtopic, difficulty, subtopics[subtopic]
            )
    return tuple(chosen.values())


def _flaws(domain: Domain, rng: random.Random) -> tuple[FlawAssignment, ...]:
    config = domain.flaws
    policy = config.policy
    if rng.random() < policy.none_rate:
        return ()
    assigned: list[FlawAssignment] = []
    if policy.primary_from:
        category = rng.choice(policy.primary_from)
        name = _flaw_in(config.categories[category], rng)
        assigned.append(FlawAssignment(category, name, "primary", policy.primary_frequency))
    if policy.secondary_from:
        wanted = rng.randint(*policy.secondary_count)
        for _ in range(wanted * _DISTINCT_DRAW_ATTEMPTS):
            if len(assigned) >= wanted + bool(policy.primary_from):
                break
            category = rng.choice(policy.secondary_from)
            name = _flaw_in(config.categories[category], rng)
            if all(flaw.name != name for flaw in assigned):
                assigned.append(
                    FlawAssignment(category, name, "secondary", policy.secondary_frequency)
                )
    return tuple(assigned)


def _flaw_in(category: Mapping[str, object], rng: random.Random) -> str:
    return weighted_choice(rng, {name: flaw.weight for name, flaw in category.items()})  # type: ignore[attr-defined]


def _target_turns(domain: Domain, rng: random.Random) -> int:
    buckets = domain.info.length.buckets
    bucket = rng.choices(buckets, weights=[b.weight for b in buckets])[0]
    return rng.randint(*bucket.turns)
