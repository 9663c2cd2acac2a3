"""A few planned scenarios of a domain, rendered for reading: what `rapport domain check`
shows so that a domain's author sees the conversations their files will produce."""

from __future__ import annotations

from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.engine.plan import plan_id_for, sample_scenario


def sample_preview(domain: Domain, count: int, seed: int) -> list[Scenario]:
    """Scenarios 0..count-1 of the plan `rapport generate --seed SEED` would make."""
    plan_id = plan_id_for(domain, seed, None)
    return [sample_scenario(domain, plan_id, seed, index) for index in range(count)]


def render_scenario(domain: Domain, scenario: Scenario) -> list[str]:
    """A scenario as a few indented lines: persona, topics, flaws, target length."""
    persona = scenario.persona
    roles = domain.info.roles
    attributes = ", ".join(f"{_words(k)} {_words(v)}" for k, v in persona.attributes.items())
    low, high = persona.word_limit
    cooperation = ", ".join(
        f"{_words(mode)} {share:.0%}" for mode, share in persona.cooperation.items()
    )
    lines = [
        f"scenario {scenario.index}: {persona.name} ({roles.user}), "
        f"{scenario.target_turns} exchanges with the {roles.assistant}",
        f"  persona: {attributes}; traits {', '.join(persona.traits) or 'none'}",
        f"  writes {_words(persona.writing_style)} ({low}-{high} words); "
        f"cooperation: {cooperation}",
    ]
    lines += [
        f"  topic: {t.category} / {_words(t.subtopic)} ({t.difficulty}): {t.description}"
        for t in scenario.topics
    ]
    lines += [
        f"  flaw: {_words(f.name)} ({f.category}, {f.role}, in {f.frequency:.0%} of messages)"
        for f in scenario.flaws
    ] or ["  flaws: none"]
    return lines


def _words(name: str) -> str:
    return name.replace("_", " ")
