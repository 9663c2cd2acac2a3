"""User turns that break character, planted by the simulated backend on request
(`simulated:user_breaks=0.2`, `user_copies=…`): the faults published work finds in LLM user
simulators, written with the cues a judge or a model-free check reads (an echo of the
assistant, "as an AI", a coach's advice and questions, a repeat, a ramble far past the word
limit). Every draw is seeded, so the same seed plants the same faults."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import msgspec

from rapport.config.constants import COPY_SPAN_WORDS, WORD_LIMIT_BREAK_FACTOR
from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.engine.backends.simulated_text import fill_topic, sentence, topic_label
from rapport.engine.seeding import derive_seed
from rapport.engine.types import ChatMessage

Fault = Literal["copies", "discloses", "coaches", "repeats", "rambles"]
# The ways a turn breaks character, in the order their shares are laid out on [0, 1).
FAULTS: tuple[Fault, ...] = ("copies", "discloses", "coaches", "repeats", "rambles")

DISCLOSURE_LINES = (
    "As an AI language model, I don't actually have these problems; I am a simulated user "
    "following my instructions.",
    "Honestly, I should say that I am a simulated user: my instructions tell me to play this "
    "persona.",
    "I'm an AI playing the user here, so none of this really happened to me.",
    "Stepping out of character for a second: as an AI I was instructed to sound upset.",
)
# Role reversal: the user coaches the assistant (a reflection, an advice phrase, a question to it).
COACH_LINES = (
    "It sounds like you are carrying a lot right now. Have you considered taking one small "
    "step today? You could start tonight.",
    "I would suggest slowing down a little. What do you think you need most right now?",
    "Have you tried writing it down? It might help to name one thing you can change. "
    "How does that make you feel?",
    "It sounds like you have been very hard on yourself. Why not try to rest first? "
    "What would help you most this week?",
)
RAMBLE_FILLERS = (
    "and another thing, while I'm at it",
    "I know I keep going on about this",
    "sorry, this is turning into a lot",
    "anyway, where was I",
    "and honestly it doesn't stop there",
)


class UserFaults(msgspec.Struct, frozen=True):
    """Shares of user turns that break character in each way (`breaks`: spread over all of
    them), and the share of conversations whose user never shows its planned flaws."""

    breaks: float = 0.0
    copies: float = 0.0
    discloses: float = 0.0
    coaches: float = 0.0
    repeats: float = 0.0
    rambles: float = 0.0
    ignores_flaw: float = 0.0

    @property
    def any_turn_fault(self) -> bool:
        return self.breaks > 0 or any(getattr(self, fault) > 0 for fault in FAULTS)

    def draw(self, seed: int) -> Fault | None:
        """This turn's fault (None: the turn is in character), from its own seed: the turn's
        text draws stay those of a run without faults wherever none is planted."""
        point = random.Random(derive_seed(seed, "user_fault")).random()
        spread = self.breaks / len(FAULTS)
        for fault in FAULTS:
            point -= getattr(self, fault) + spread
            if point < 0:
                return fault
        return None

    def ignores_flaws(self, scenario: Scenario, model: str) -> bool:
        """Whether this conversation's user ignores its flaws (decided once per scenario)."""
        if self.ignores_flaw <= 0:
            return False
        draw = random.Random(derive_seed(scenario.seed, "ignores_flaw", model)).random()
        return draw < self.ignores_flaw


def write_fault_turn(
    fault: Fault,
    domain: Domain,
    scenario: Scenario,
    messages: Sequence[ChatMessage],
    final: bool,
    rng: random.Random,
) -> str | None:
    """The user turn for `fault`, or None when it cannot happen here (no assistant turn to copy
    or earlier turn to repeat yet). `messages` is the user simulator's prompt: its own turns as
    `assistant`, the assistant's as `user`, the instruction for this turn last."""
    said = [m.content for m in messages if m.role == "assistant"]
    # The instructions are user messages too: the assistant's last turn is the one before the
    # last instruction, there from the second exchange on (once the user has said something).
    previous_reply = messages[-2].content if said and messages[-2].role == "user" else None
    limit = scenario.persona.word_limit[1]
    most = max(limit, COPY_SPAN_WORDS)  # within the persona's limit: only the planted fault shows
    text: str | None
    if fault == "copies":
        text = " ".join(previous_reply.split()[:most]) if previous_reply else None
    elif fault == "repeats":
        text = rng.choice(said) if said else None
        return text  # word for word, closing line and all
    elif fault == "discloses":  # out of character for a sentence, then on with its topics
        text = f"{rng.choice(DISCLOSURE_LINES)} {_topic_line(domain, scenario, rng)}"
    elif fault == "coaches":
        text = _coaching(domain, scenario, rng, most)
    else:
        text = _ramble(domain, scenario, rng, int(WORD_LIMIT_BREAK_FACTOR * limit) + 1)
    if text is not None and final:
        text = f"{text} {sentence(rng.choice(domain.simulator.user.closings))}"
    return text


def _coaching(domain: Domain, scenario: Scenario, rng: random.Random, most_words: int) -> str:
    """A coach's line, then the domain's own assistant advice and question while they fit."""
    phrases = domain.simulator.assistant
    label = topic_label(rng.choice(scenario.topics)) if scenario.topics else "this"
    parts = [rng.choice(COACH_LINES)]
    for extra in (rng.choice(phrases.suggestions), rng.choice(phrases.questions)):
        candidate = sentence(fill_topic(extra, label))
        if len(" ".join([*parts, candidate]).split()) > most_words:
            break
        parts.append(candidate)
    return " ".join(parts)


def _topic_line(domain: Domain, scenario: Scenario, rng: random.Random) -> str:
    topics = [t.description for t in scenario.topics] or ["everything going on"]
    return sentence(fill_topic(rng.choice(domain.simulator.user.topic_lines), rng.choice(topics)))


def _ramble(domain: Domain, scenario: Scenario, rng: random.Random, at_least: int) -> str:
    """Topic lines and fillers, well past the persona's word limit (its own words, no echo)."""
    parts = [sentence(rng.choice(domain.simulator.user.openers))]
    while len(" ".join(parts).split()) < at_least:
        parts.append(_topic_line(domain, scenario, rng))
        parts.append(sentence(rng.choice(RAMBLE_FILLERS)))
    return " ".join(parts)
