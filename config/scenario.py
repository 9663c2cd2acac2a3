"""A planned conversation: who the simulated user is, what they bring, how long it runs."""

from __future__ import annotations

import msgspec


class TopicSeed(msgspec.Struct, frozen=True):
    """One thing the user brings: a subtopic of a category, with a difficulty."""

    category: str
    subtopic: str
    difficulty: str
    description: str


class FlawAssignment(msgspec.Struct, frozen=True):
    """A flaw the user shows, and the share of their messages it shows in."""

    category: str
    name: str
    role: str  # "primary" | "secondary"
    frequency: float


class Persona(msgspec.Struct, frozen=True):
    """The simulated user."""

    name: str
    attributes: dict[str, str]
    traits: tuple[str, ...]
    writing_style: str
    word_limit: tuple[int, int]
    cooperation: dict[str, float]


class Scenario(msgspec.Struct, frozen=True):
    """One planned conversation, fully determined by (plan seed, index)."""

    scenario_id: str
    plan_id: str
    index: int
    seed: int
    persona: Persona
    topics: tuple[TopicSeed, ...]
    flaws: tuple[FlawAssignment, ...]
    target_turns: int
