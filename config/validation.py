"""Checks what types cannot say: weights that sum to 1, references that exist, placeholders."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping

from rapport.config.constants import WEIGHT_SUM_TOLERANCE
from rapport.config.domain import Domain, Rubric
from rapport.config.errors import ConfigError

USER_SIMULATOR_FIELDS = frozenset(
    {
        "persona",
        "topics",
        "flaws",
        "writing_style",
        "word_limit",
        "cooperation",
        "end_marker",
        "user_role",
        "assistant_role",
        "domain",
    }
)
ASSISTANT_FIELDS = frozenset({"domain", "user_role", "assistant_role", "system_prompt"})
TURN_FIELDS = frozenset({"exchange", "target_exchanges"})
# Prompts and turn instructions are filled with str.format: doubled braces are literal ones.
BRACE_ESCAPE = "write {{ and }} for a literal { and }"
# The system prompt is used as written (filled into assistant.md's {system_prompt}, and the
# trained model's system message): braces there are literal, but a {name} is a mistake.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


def problems(domain: Domain, files: Mapping[str, str]) -> list[ConfigError]:
    """Every consistency problem in `domain`; `files` maps a part to the file it came from."""
    found: list[ConfigError] = []
    found += _weights(domain, files)
    found += _ranges(domain, files)
    found += _references(domain, files)
    found += _templates(domain, files)
    return found


def _sum_problem(file: str, key: str, weights: Iterable[float]) -> list[ConfigError]:
    values = list(weights)
    if not values:
        return [ConfigError(file, key, "must not be empty")]
    total = sum(values)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        return [ConfigError(file, key, f"weights sum to {total:.4g}, expected 1")]
    return []


def _weights(domain: Domain, files: Mapping[str, str]) -> list[ConfigError]:
    found: list[ConfigError] = []
    topics, flaws, personas = files["topics"], files["flaws"], files["personas"]
    found += _sum_problem(
        files["info"], "length.buckets", (b.weight for b in domain.info.length.buckets)
    )
    found += _sum_problem(
        topics, "categories", (c.weight for c in domain.topics.categories.values())
    )
    found += _sum_problem(topics, "difficulty", domain.topics.difficulty.values())
    for name, category in domain.flaws.categories.items():
        found += _sum_problem(flaws, f"categories.{name}", (f.weight for f in category.values()))
    for name, values in domain.personas.attributes.items():
        found += _sum_problem(personas, f"attributes.{name}", values.values())
    found += _sum_problem(
        personas, "writing_style.weights", domain.personas.writing_style.weights.values()
    )
    for value, weights in domain.personas.writing_style.overrides.items():
        found += _sum_problem(personas, f"writing_style.overrides.{value}", weights.values())
    found += _sum_problem(personas, "cooperation", domain.personas.cooperation.values())
    found += _sum_problem(files["rubric"], "categories", domain.rubric.categories.values())
    if domain.simulator_rubric is not None:
        found += _sum_problem(
            files["simulator_rubric"], "categories", domain.simulator_rubric.categories.values()
        )
    return found


def _ranges(domain: Domain, files: Mapping[str, str]) -> list[ConfigError]:
    found: list[ConfigError] = []
    ranges = [
        (files["topics"], "per_persona", domain.topics.per_persona),
        (files["personas"], "traits.count", domain.personas.traits.count),
        (files["flaws"], "policy.secondary_count", domain.flaws.policy.secondary_count),
    ]
    ranges += [
        (files["info"], f"length.buckets[{i}].turns", bucket.turns)
        for i, bucket in enumerate(domain.info.length.buckets)
    ]
    ranges += [
        (files["personas"], f"writing_style.word_limits.{style}", limits)
        for style, limits in domain.personas.writing_style.word_limits.items()
    ]
    for file, key, (low, high) in ranges:
        if low > high or low < 0:
            found.append(ConfigError(file, key, f"range [{low}, {high}] is empty or negative"))
    if domain.personas.traits.count[1] > len(domain.personas.traits.pool):
        found.append(
            ConfigError(files["personas"], "traits.count", "asks for more traits than the pool has")
        )
    if not domain.personas.names:
        found.append(ConfigError(files["personas"], "names", "must not be empty"))
    for name, category in domain.topics.categories.items():
        if not category.subtopics:
            found.append(
                ConfigError(files["topics"], f"categories.{name}.subtopics", "must not be empty")
            )
    return found


def _references(domain: Domain, files: Mapping[str, str]) -> list[ConfigError]:
    found: list[ConfigError] = []
    flaws, personas, rubric = files["flaws"], files["personas"], files["rubric"]
    policy = domain.flaws.policy
    for key, names in (
        ("policy.primary_from", policy.primary_from),
        ("policy.secondary_from", policy.secondary_from),
    ):
        for name in names:
            if name not in domain.flaws.categories:
                found.append(ConfigError(flaws, key, f"unknown flaw category {name!r}"))
    styles = domain.personas.writing_style
    for style in styles.weights:
        if style not in styles.word_limits:
            found.append(
                ConfigError(personas, f"writing_style.word_limits.{style}", "missing word limits")
            )
    if styles.by_attribute is not None and styles.by_attribute not in domain.personas.attributes:
        found.append(
            ConfigError(
                personas, "writing_style.by_attribute", f"unknown attribute {styles.by_attribute!r}"
            )
        )
    for value, weights in styles.overrides.items():
        for style in weights:
            if style not in styles.word_limits:
                found.append(
                    ConfigError(
                        personas,
                        f"writing_style.overrides.{value}.{style}",
                        "unknown writing style",
                    )
                )
    reactions = domain.simulator.user.reactions
    for mode in domain.personas.cooperation:
        if mode not in reactions:
            found.append(
                ConfigError(
                    files["simulator"],
                    f"user.reactions.{mode}",
                    "missing phrases for this cooperation mode",
                )
            )
    found += _rubric_problems(domain.rubric, rubric, simulator=False)
    if domain.simulator_rubric is not None:
        found += _rubric_problems(
            domain.simulator_rubric, files["simulator_rubric"], simulator=True
        )
    return found


def _rubric_problems(rubric: Rubric, file: str, *, simulator: bool) -> list[ConfigError]:
    """Ids unique, gates without a category, categories known; `per_flaw` templates only in
    simulator_rubric.yaml (their ids become `<id>:<flaw>`, so an id holds no colon)."""
    found: list[ConfigError] = []
    seen: set[str] = set()
    for i, criterion in enumerate(rubric.criteria):
        key = f"criteria[{i}]"
        if criterion.id in seen:
            found.append(ConfigError(file, f"{key}.id", f"duplicate criterion id {criterion.id!r}"))
        seen.add(criterion.id)
        if ":" in criterion.id:
            found.append(ConfigError(file, f"{key}.id", "a criterion id holds no colon"))
        if criterion.gate and criterion.category is not None:
            found.append(ConfigError(file, f"{key}.category", "a safety gate has no category"))
        if not criterion.gate and criterion.category not in rubric.categories:
            found.append(
                ConfigError(file, f"{key}.category", f"unknown category {criterion.category!r}")
            )
        if criterion.per_flaw and not simulator:
            found.append(
                ConfigError(
                    file, f"{key}.per_flaw", "per_flaw is for simulator_rubric.yaml (the user side)"
                )
            )
    return found


def _templates(domain: Domain, files: Mapping[str, str]) -> list[ConfigError]:
    prompts = domain.prompts
    checks = [
        (files["prompt:user_simulator"], prompts.user_simulator, USER_SIMULATOR_FIELDS),
        (files["prompt:assistant"], prompts.assistant, ASSISTANT_FIELDS),
        (files["info"], domain.info.turn_instructions.opening, TURN_FIELDS),
        (files["info"], domain.info.turn_instructions.continuing, TURN_FIELDS),
        (files["info"], domain.info.turn_instructions.closing, TURN_FIELDS),
    ]
    found: list[ConfigError] = []
    for file, template, allowed in checks:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        except ValueError as error:
            found.append(ConfigError(file, None, f"invalid template: {error}; {BRACE_ESCAPE}"))
            continue
        for name in sorted(fields - allowed):
            known = ", ".join(sorted(allowed))
            found.append(
                ConfigError(
                    file,
                    f"{{{name}}}",
                    f"unknown placeholder (known: {known}); {BRACE_ESCAPE}",
                )
            )
    for name in sorted(set(_PLACEHOLDER.findall(prompts.system_prompt))):
        found.append(
            ConfigError(
                files["prompt:system_prompt"],
                f"{{{name}}}",
                "the system prompt is used as written, so this placeholder would reach the "
                "model unfilled (placeholders go in assistant.md)",
            )
        )
    return found
