"""Prompts built from the domain config and the scenario."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from string import Formatter

from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.engine.types import ChatMessage

Pieces = tuple[tuple[str, str | None], ...]  # (literal text, field name or None)


def fill(template: str, values: Mapping[str, object]) -> str:
    """`template.format_map(values)`, from the template parsed once: a user simulator's
    prompt is rendered on every one of its turns, and parsing a long template is most of it."""
    pieces = _pieces(template)
    if pieces is None:
        return template.format_map(values)
    return "".join([text if name is None else f"{text}{values[name]}" for text, name in pieces])


@functools.lru_cache(maxsize=64)  # a pure function of an immutable string (as `re` caches)
def _pieces(template: str) -> Pieces | None:
    """The template as literal text and plain `{name}` fields; None when it uses anything
    else (format specs, conversions, attribute or index lookups): format_map handles those."""
    pieces = []
    for text, name, spec, conversion in Formatter().parse(template):
        if name is not None and (spec or conversion or not name.isidentifier()):
            return None
        pieces.append((text, name))
    return tuple(pieces)


def describe_persona(scenario: Scenario) -> str:
    persona = scenario.persona
    lines = [f"Name: {persona.name}"]
    lines += [
        f"{name.replace('_', ' ').capitalize()}: {value}"
        for name, value in persona.attributes.items()
    ]
    lines.append(f"Traits: {', '.join(persona.traits)}")
    return "\n".join(lines)


def describe_topics(scenario: Scenario) -> str:
    return "\n".join(
        f"- {t.category} / {t.subtopic.replace('_', ' ')} ({t.difficulty}): {t.description}"
        for t in scenario.topics
    )


def describe_flaws(domain: Domain, scenario: Scenario) -> str:
    if not scenario.flaws:
        return "- none: you communicate fairly directly."
    lines = []
    for assignment in scenario.flaws:
        flaw = domain.flaws.categories[assignment.category][assignment.name]
        line = (
            f"- {assignment.name.replace('_', ' ')} ({assignment.role}, in about "
            f"{assignment.frequency:.0%} of your messages): {flaw.description}"
        )
        if flaw.notes:
            line += f" How to play it: {flaw.notes}"
        lines.append(line)
    return "\n".join(lines)


def user_simulator_prompt(domain: Domain, scenario: Scenario) -> str:
    persona = scenario.persona
    low, high = persona.word_limit
    return fill(
        domain.prompts.user_simulator,
        {
            "domain": domain.info.description,
            "persona": describe_persona(scenario),
            "topics": describe_topics(scenario),
            "flaws": describe_flaws(domain, scenario),
            "writing_style": persona.writing_style.replace("_", " "),
            "word_limit": f"{low}-{high} words",
            "cooperation": ", ".join(
                f"{mode.replace('_', ' ')} {share:.0%}"
                for mode, share in persona.cooperation.items()
            ),
            "end_marker": domain.info.ending.marker,
            "user_role": domain.info.roles.user,
            "assistant_role": domain.info.roles.assistant,
        },
    )


def instruction_message(domain: Domain, exchange: int, target: int, final: bool) -> ChatMessage:
    """The user simulator's instruction for one exchange, as the user message that ends its
    prompt for that exchange (and stays in its later prompts, so each extends the last)."""
    instructions = domain.info.turn_instructions
    template = instructions.closing if final else instructions.continuing
    if exchange == 1 and not final:
        template = instructions.opening
    return _instruction(template, exchange, target)


@functools.lru_cache(maxsize=4096)  # one shared message per (template, exchange, target)
def _instruction(template: str, exchange: int, target: int) -> ChatMessage:
    return ChatMessage("user", fill(template, {"exchange": exchange, "target_exchanges": target}))


def assistant_prompt(domain: Domain) -> str:
    return domain.prompts.assistant.format_map(
        {
            "domain": domain.info.description,
            "user_role": domain.info.roles.user,
            "assistant_role": domain.info.roles.assistant,
            "system_prompt": domain.prompts.system_prompt,
        }
    )
