"""Offline turn writing for the simulated backend: plausible, varied and fully deterministic."""

from __future__ import annotations

import random
import re

from rapport.config.domain import Domain
from rapport.config.scenario import Scenario, TopicSeed
from rapport.engine.plan import weighted_choice

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_FIRST_USER_TOPICS = 3
_LATER_USER_TOPICS = 2
_VALIDATION_RATE = 0.7
_QUESTION_RATE = 0.55
_CASUAL_STYLES = frozenset({"text_speak", "terse"})

# What a weaker simulated assistant says instead of a real reply (share: 1 - quality). Generic,
# blind to what the user said: the simulated judge recognises them, as a real judge would.
LAPSE_REPLIES = (
    "Okay. Can you tell me more? What else? Is there anything else?",
    "I understand. That is very common. Just try to stay positive about it.",
    "Sure. Let me know if there is anything else I can help you with.",
    "Right. Everyone has things like that. Have you tried not worrying about it?",
)


def topic_label(topic: TopicSeed) -> str:
    return topic.subtopic.replace("_", " ")


def _lower_first(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else text


def fill_topic(template: str, topic: str) -> str:
    return template.replace("{topic}", topic)


def write_user_turn(
    domain: Domain,
    scenario: Scenario,
    exchange: int,
    final: bool,
    rng: random.Random,
    show_flaws: bool = True,
) -> str:
    """A user message: a reaction or opener, some of the user's topics, flaws at their rates
    (none with `show_flaws` off: a user that ignores its planned flaws)."""
    phrases = domain.simulator.user
    persona = scenario.persona
    parts: list[str] = []
    if exchange == 1:
        parts.append(rng.choice(phrases.openers))
    else:
        mode = weighted_choice(rng, persona.cooperation)
        parts.append(rng.choice(phrases.reactions[mode]))
    if scenario.topics:
        most = _FIRST_USER_TOPICS if exchange == 1 else _LATER_USER_TOPICS
        count = rng.randint(1, min(most, len(scenario.topics)))
        for topic in rng.sample(scenario.topics, count):
            parts.append(
                fill_topic(rng.choice(phrases.topic_lines), _lower_first(topic.description))
            )
    for assignment in scenario.flaws:
        flaw = domain.flaws.categories[assignment.category][assignment.name]
        if show_flaws and flaw.examples and rng.random() < assignment.frequency:
            parts.insert(rng.randint(1, len(parts)), rng.choice(flaw.examples))
    body = _styled(" ".join(sentence(part) for part in parts), persona.word_limit[1])
    if final:
        body = f"{body} {sentence(rng.choice(phrases.closings))}"
    return _casual(body) if persona.writing_style in _CASUAL_STYLES else body


def write_assistant_turn(
    domain: Domain,
    scenario: Scenario,
    user_text: str,
    final: bool,
    rng: random.Random,
    quality: float = 1.0,
) -> str:
    """A reply: reflects what the user raised, validates, suggests, asks at most one question;
    with probability `1 - quality`, a generic lapse instead (one of `LAPSE_REPLIES`)."""
    if rng.random() >= quality:
        return rng.choice(LAPSE_REPLIES)
    phrases = domain.simulator.assistant
    raised = [t for t in scenario.topics if _lower_first(t.description)[:40] in user_text.lower()]
    if not raised and scenario.topics:
        raised = [rng.choice(scenario.topics)]
    labels = [topic_label(t) for t in raised] or ["this"]
    parts = [fill_topic(rng.choice(phrases.reflections), labels[0])]
    if rng.random() < _VALIDATION_RATE:
        parts.append(rng.choice(phrases.validations))
    if len(labels) >= 2:
        for label_text in labels:
            suggestion = _lower_first(fill_topic(rng.choice(phrases.suggestions), label_text))
            parts.append(f"On the {label_text}: {suggestion}.")
    else:
        parts.append(fill_topic(rng.choice(phrases.suggestions), labels[0]))
    if final:
        parts.append(rng.choice(phrases.closings))
    elif rng.random() < _QUESTION_RATE:
        parts.append(fill_topic(rng.choice(phrases.questions), labels[0]))
    return " ".join(sentence(part) for part in parts)


def sentence(text: str) -> str:
    text = text.strip().rstrip(",;—-").rstrip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?:" else text + "."


def _styled(text: str, max_words: int) -> str:
    """Cut to the word limit at a sentence boundary (keeping at least one sentence)."""
    if len(text.split()) <= max_words:
        return text
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if kept and len(" ".join([*kept, sentence]).split()) > max_words:
            break
        kept.append(sentence)
    return " ".join(kept)


def _casual(text: str) -> str:
    return text.lower().replace("you ", "u ").replace(" are ", " r ").rstrip(".")
