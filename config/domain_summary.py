"""The size of a domain at a glance: what `rapport domain check` prints for a valid folder."""

from __future__ import annotations

import msgspec

from rapport.config.domain import Domain


class DomainSummary(msgspec.Struct, frozen=True):
    name: str
    topic_categories: int
    subtopics: int
    flaw_categories: int
    flaws: int
    criteria: int  # enabled, weighted criteria
    rubric_categories: int
    gates: int  # enabled safety gates
    disabled_criteria: int
    pass_threshold: float
    persona_attributes: int
    names: int
    traits: int
    writing_styles: int
    user_rubric: str = ""  # simulator_rubric.yaml at a glance; empty: the user is not judged


def summarize(domain: Domain) -> DomainSummary:
    enabled = [c for c in domain.rubric.criteria if c.enabled]
    return DomainSummary(
        name=domain.name,
        topic_categories=len(domain.topics.categories),
        subtopics=sum(len(c.subtopics) for c in domain.topics.categories.values()),
        flaw_categories=len(domain.flaws.categories),
        flaws=sum(len(category) for category in domain.flaws.categories.values()),
        criteria=sum(not c.gate for c in enabled),
        rubric_categories=len(domain.rubric.categories),
        gates=sum(c.gate for c in enabled),
        disabled_criteria=len(domain.rubric.criteria) - len(enabled),
        pass_threshold=domain.rubric.pass_threshold,
        persona_attributes=len(domain.personas.attributes),
        names=len(domain.personas.names),
        traits=len(domain.personas.traits.pool),
        writing_styles=len(domain.personas.writing_style.weights),
        user_rubric=_user_rubric(domain),
    )


def _user_rubric(domain: Domain) -> str:
    rubric = domain.simulator_rubric
    if rubric is None:
        return ""
    enabled = [c for c in rubric.criteria if c.enabled]
    per_flaw = sum(c.per_flaw for c in enabled)
    gates = sum(c.gate for c in enabled)
    fixed = len(enabled) - per_flaw - gates
    flaws = f" + {per_flaw} asked per planned flaw" if per_flaw else ""
    return (
        f"user side (simulator_rubric.yaml): {fixed} weighted criteria{flaws} + {gates} "
        f"gate{'s' * (gates != 1)}, pass at {rubric.pass_threshold:.2f}"
    )


def describe(summary: DomainSummary) -> list[str]:
    """A few readable lines."""
    disabled = f", {summary.disabled_criteria} disabled" if summary.disabled_criteria else ""
    return [
        f"topics: {summary.subtopics} subtopics in {summary.topic_categories} categories",
        f"flaws: {summary.flaws} in {summary.flaw_categories} categories",
        f"rubric: {summary.criteria} weighted criteria in {summary.rubric_categories} categories"
        f" + {summary.gates} safety gate{'s' * (summary.gates != 1)}{disabled}, "
        f"pass at {summary.pass_threshold:.2f}",
        f"personas: {summary.persona_attributes} attributes, {summary.names} names, "
        f"{summary.traits} traits, {summary.writing_styles} writing styles",
        *([summary.user_rubric] if summary.user_rubric else []),
    ]
