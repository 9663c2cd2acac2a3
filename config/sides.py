"""The two sides of a conversation that are judged: the assistant against rubric.yaml, the
simulated user against simulator_rubric.yaml, whose `per_flaw` templates become one criterion
per flaw the scenario planned (so the rubric of the user side depends on the scenario)."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from rapport.config.domain import Criterion, Domain, Rubric
from rapport.config.errors import RapportError
from rapport.config.scenario import FlawAssignment, Scenario

Side = Literal["assistant", "user"]
SIDES: tuple[Side, ...] = get_args(Side)
FLAW_SEPARATOR = ":"  # a per-flaw criterion's id: `<template id>:<flaw name>`


def judged_sides(domain: Domain) -> tuple[Side, ...]:
    """The sides this domain judges: the user's only with a simulator_rubric.yaml."""
    return SIDES if domain.simulator_rubric is not None else ("assistant",)


def rubric_for(domain: Domain, scenario: Scenario, side: Side) -> Rubric | None:
    """The rubric one side of this scenario's conversation is judged against (None: that side
    is not judged in this domain)."""
    if side == "assistant":
        return domain.rubric
    template = domain.simulator_rubric
    if template is None:
        return None
    criteria: list[Criterion] = []
    for criterion in template.criteria:
        if not criterion.per_flaw:
            criteria.append(criterion)
            continue
        criteria += [flaw_criterion(domain, criterion, flaw) for flaw in scenario.flaws]
    return msgspec.structs.replace(template, criteria=tuple(criteria))


def flaw_criterion(domain: Domain, template: Criterion, assignment: FlawAssignment) -> Criterion:
    """A `per_flaw` template asked about one planned flaw: its question followed by the flaw's
    name, plan, description and examples from flaws.yaml."""
    flaw = domain.flaws.categories.get(assignment.category, {}).get(assignment.name)
    lines = [
        template.question,
        f"The planned flaw: {assignment.name} ({assignment.category}, {assignment.role}; "
        f"planned to show in about {assignment.frequency:.0%} of the user's messages).",
    ]
    if flaw is not None:
        lines.append(f"What it is: {' '.join(flaw.description.split())}")
        if flaw.examples:
            quoted = "; ".join(f'"{example}"' for example in flaw.examples)
            lines.append(f"How it can read (examples, not required wording): {quoted}")
    return msgspec.structs.replace(
        template,
        id=f"{template.id}{FLAW_SEPARATOR}{assignment.name}",
        question="\n".join(lines),
        per_flaw=False,
    )


def flaw_of(criterion_id: str) -> str | None:
    """The flaw a per-flaw criterion asks about (None for any other criterion)."""
    head, separator, flaw = criterion_id.partition(FLAW_SEPARATOR)
    return flaw if separator and head and flaw else None


def parse_sides(text: str, flag: str = "--side") -> tuple[Side, ...]:
    """`assistant`, `user` or `both`, as the sides to judge; anything else is one clear error."""
    if text == "both":
        return SIDES
    if text in SIDES:
        return (text,)  # type: ignore[return-value]
    raise RapportError(f"{flag} must be assistant, user or both, not {text!r}")
