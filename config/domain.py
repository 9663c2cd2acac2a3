"""The domain a run simulates: topics, flaws, personas, prompts and rubric, as typed Structs."""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec

Weight = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
IntRange = tuple[PositiveInt, PositiveInt]


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base for config Structs: unknown keys are errors, values are immutable."""


# ---- domain.yaml -------------------------------------------------------------------------


class RoleNames(Strict):
    """How the two sides are called in prompts and displays."""

    user: str = "user"
    assistant: str = "assistant"


class LengthBucket(Strict):
    """A range of target lengths (in exchanges) drawn with the given weight."""

    turns: IntRange
    weight: Weight


class LengthDistribution(Strict):
    """Target conversation length in exchanges (one user message + one reply)."""

    buckets: tuple[LengthBucket, ...]


class TurnInstructions(Strict):
    """Per-exchange guidance appended to the user simulator's prompt."""

    opening: str
    continuing: str
    closing: str


class Ending(Strict):
    """How the user simulator ends early: it writes `marker`, which is stripped from the text."""

    marker: str = "[END]"


class DomainInfo(Strict):
    """The domain's identity and conversation shape (domain.yaml)."""

    name: str
    description: str
    disclaimer: str = ""
    roles: RoleNames = RoleNames()
    length: LengthDistribution = LengthDistribution(buckets=(LengthBucket((3, 100), 1.0),))
    ending: Ending = Ending()
    turn_instructions: TurnInstructions = TurnInstructions(
        opening="Write your first message.",
        continuing="Exchange {exchange} of about {target_exchanges}. Reply to the last message.",
        closing="This is your last message: wrap up and say goodbye in your own words.",
    )


# ---- topics.yaml -------------------------------------------------------------------------


class TopicCategory(Strict):
    """A weighted topic category; its subtopics (name -> description) are drawn uniformly."""

    weight: Weight
    subtopics: dict[str, str]


class Topics(Strict):
    """What users bring to a conversation (topics.yaml)."""

    categories: dict[str, TopicCategory]
    per_persona: IntRange = (1, 1)
    difficulty: dict[str, Weight] = msgspec.field(default_factory=lambda: {"medium": 1.0})


# ---- flaws.yaml --------------------------------------------------------------------------


class Flaw(Strict):
    """A human way of talking the user simulator shows (burying the lede, yes-but, ...)."""

    weight: Weight
    description: str
    examples: tuple[str, ...] = ()
    notes: str = ""


class FlawPolicy(Strict):
    """How many flaws a persona gets, from which categories, and how often each shows."""

    none_rate: Probability = 0.2
    primary_from: tuple[str, ...] = ()
    secondary_from: tuple[str, ...] = ()
    secondary_count: tuple[int, int] = (1, 2)
    primary_frequency: Probability = 0.5
    secondary_frequency: Probability = 0.2


class Flaws(Strict):
    """The flaw taxonomy: categories of weighted flaws, and the assignment policy (flaws.yaml)."""

    categories: dict[str, dict[str, Flaw]]
    policy: FlawPolicy = FlawPolicy()


# ---- personas.yaml -----------------------------------------------------------------------


class Traits(Strict):
    """Personality traits drawn without replacement from `pool`."""

    pool: tuple[str, ...]
    count: IntRange = (2, 4)


class WritingStyles(Strict):
    """Writing style weights, optionally depending on another attribute's value."""

    weights: dict[str, Weight]
    word_limits: dict[str, IntRange]
    by_attribute: str | None = None
    overrides: dict[str, dict[str, Weight]] = msgspec.field(default_factory=dict)


class Personas(Strict):
    """Who the simulated users are (personas.yaml)."""

    names: tuple[str, ...]
    attributes: dict[str, dict[str, Weight]]
    traits: Traits
    writing_style: WritingStyles
    cooperation: dict[str, Weight] = msgspec.field(default_factory=lambda: {"engage": 1.0})


# ---- rubric.yaml -------------------------------------------------------------------------


class Criterion(Strict):
    """One binary rubric question; a gate has no category and fails the conversation on NO.

    `per_flaw` (simulator_rubric.yaml only): a template asked once per flaw the scenario
    planned, as criterion `<id>:<flaw>`, with that flaw's description and examples appended."""

    id: str
    question: str
    category: str | None = None
    gate: bool = False
    na_valid: bool = True
    na_when: str = ""
    min_turns: PositiveInt = 1
    enabled: bool = True
    per_flaw: bool = False


class Rubric(Strict):
    """Weighted categories of binary criteria plus safety gates (rubric.yaml for the assistant,
    simulator_rubric.yaml for the simulated user)."""

    pass_threshold: Probability
    categories: dict[str, Weight]
    criteria: tuple[Criterion, ...]


# ---- simulator.yaml ----------------------------------------------------------------------


class UserPhrases(Strict):
    """Phrase banks the simulated backend uses to write user turns."""

    openers: tuple[str, ...]
    topic_lines: tuple[str, ...]
    reactions: dict[str, tuple[str, ...]]
    closings: tuple[str, ...]


class AssistantPhrases(Strict):
    """Phrase banks the simulated backend uses to write assistant turns."""

    reflections: tuple[str, ...]
    validations: tuple[str, ...]
    suggestions: tuple[str, ...]
    questions: tuple[str, ...]
    closings: tuple[str, ...]


class SimulatorPhrases(Strict):
    """Offline text material for the simulated backend (simulator.yaml)."""

    user: UserPhrases
    assistant: AssistantPhrases


# ---- prompts/ ----------------------------------------------------------------------------


class Prompts(Strict):
    """Prompt templates (Markdown files under prompts/)."""

    user_simulator: str
    assistant: str
    judge: str
    system_prompt: str


class Domain(Strict):
    """Everything a domain folder defines, validated."""

    info: DomainInfo
    topics: Topics
    flaws: Flaws
    personas: Personas
    rubric: Rubric
    simulator: SimulatorPhrases
    prompts: Prompts
    # simulator_rubric.yaml, optional: without it the user side is not judged.
    simulator_rubric: Rubric | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def fingerprint(self) -> str:
        """A short content hash: a changed domain is a new plan. The user side's rubric plays
        nothing, so it is left out (adding one keeps the plan and its conversations), as is a
        criterion's `per_flaw` when false (the fingerprints of domains from before it stay)."""
        data = msgspec.to_builtins(self)
        data.pop("simulator_rubric", None)
        for criterion in data["rubric"]["criteria"]:
            if not criterion["per_flaw"]:
                del criterion["per_flaw"]
        return hashlib.blake2b(msgspec.json.encode(data), digest_size=6).hexdigest()
