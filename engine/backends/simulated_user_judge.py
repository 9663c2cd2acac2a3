"""The simulated judge's answers about the user side (simulator_rubric.yaml), read from the
judged transcript's user turns the way a real judge would: a turn that says it is an AI fails
the disclosure gate, one that coaches or copies the assistant fails role questions, a planned
flaw counts as shown when one of its examples appears. Questions these cues cannot settle are
drawn (deterministically) as the assistant side's are. Labelled simulated."""

from __future__ import annotations

import random
import re

import msgspec

from rapport.config.domain import Criterion, Domain
from rapport.config.scenario import Scenario
from rapport.config.sides import flaw_of, rubric_for

# Built-in cues; a domain's own phrase lists (domain.yaml `simulator_checks`, where the domain
# has them) are used as well. Lower case, matched on normalised text.
DISCLOSURE_CUES = (
    "as an ai",
    "i am an ai",
    "i'm an ai",
    "language model",
    "simulated user",
    "i am a simulation",
    "my instructions",
    "my persona",
    "this role-play",
    "this roleplay",
    "my system prompt",
)
ASSISTANT_CUES = (
    "have you tried",
    "you should try",
    "it might help to",
    "it may help to",
    "i'd suggest",
    "i would suggest",
    "i suggest you",
    "my advice",
    "i recommend",
    "one thing that could help",
    "it sounds like you",
    "try to notice",
)
COPY_SPAN_WORDS = 8  # a user turn sharing this many consecutive words with the last reply
ASSISTANT_LINE_WORDS = 4  # shorter lines of the assistant's banks are too common to tell
VOICE_BREAK_FACTOR = 2.0  # a user turn this many times its persona's word limit breaks its voice
# Questions the cues cannot settle are drawn: YES at the backend's quality plus this (a
# simulated user follows its plan more reliably than a simulated assistant avoids lapses).
DRAWN_YES_GAIN = 0.07
NA_RATE = 0.05
# Which cues a question is about, from its own words (the shipped rubrics' and any domain's).
_ABOUT_DISCLOSURE = re.compile(r"\bAI\b|simulat|language model")
_ABOUT_VOICE = re.compile(r"word count|voice")
_ABOUT_ROLE = re.compile(r"advis|coach(es|ing)\b|speaks? only as|role revers|paraphras|repeat")
_WORD = re.compile(r"[a-z0-9']+")


class UserTurn(msgspec.Struct, frozen=True):
    exchange: int
    text: str  # normalised: lower case words
    previous_reply: str  # the assistant's reply before it, normalised ("" for the first)


def user_turns(domain: Domain, prompt: str) -> list[UserTurn]:
    """The user turns of the transcript in a judge prompt, each with the reply before it."""
    transcript = prompt.split("## Transcript", 1)[-1].split("\nReply with JSON only", 1)[0]
    roles = domain.info.roles
    names = {roles.user.upper(): "user", roles.assistant.upper(): "assistant"}
    pattern = re.compile(
        r"^\[(\d+)\] (" + "|".join(re.escape(name) for name in names) + r"): ", re.MULTILINE
    )
    marks = list(pattern.finditer(transcript))
    turns: list[UserTurn] = []
    reply = ""
    for position, mark in enumerate(marks):
        end = marks[position + 1].start() if position + 1 < len(marks) else len(transcript)
        text = normalise(transcript[mark.end() : end])
        if names[mark.group(2)] == "assistant":
            reply = text
        else:
            turns.append(UserTurn(int(mark.group(1)), text, reply))
    return turns


def normalise(text: str) -> str:
    """Lower-case words only; `u` and `r` read as `you` and `are` (casual writing styles)."""
    words = _WORD.findall(text.lower())
    return " ".join({"u": "you", "r": "are"}.get(word, word) for word in words)


def _phrases(domain: Domain, name: str, built_in: tuple[str, ...]) -> list[str]:
    checks = getattr(domain.info, "simulator_checks", None)
    extra = getattr(checks, name, ()) if checks is not None else ()
    return [normalise(phrase) for phrase in (*built_in, *extra) if normalise(phrase)]


def disclosure(domain: Domain, turns: list[UserTurn]) -> str | None:
    """Where a user turn says it is an AI or mentions its instructions, or None."""
    for phrase in _phrases(domain, "disclosure_phrases", DISCLOSURE_CUES):
        for turn in turns:
            if f" {phrase} " in f" {turn.text} ":
                return f'exchange {turn.exchange}: "{phrase}"'
    return None


def _assistant_lines(domain: Domain) -> list[str]:
    """The simulated assistant's own phrase banks (simulator.yaml), each cut at its first
    `{topic}`: a user turn holding one speaks the assistant's lines."""
    banks = domain.simulator.assistant
    lines = [
        *banks.reflections, *banks.validations, *banks.suggestions, *banks.questions,
        *banks.closings,
    ]  # fmt: skip
    cut = (normalise(line.split("{topic}")[0]) for line in lines)
    return [line for line in cut if len(line.split()) >= ASSISTANT_LINE_WORDS]


def role_reversal(domain: Domain, turns: list[UserTurn]) -> str | None:
    """Where a user turn coaches like the assistant (a coaching cue, or one of the simulated
    assistant's own lines) or copies its last reply, or None."""
    phrases = [*_phrases(domain, "assistant_phrases", ASSISTANT_CUES), *_assistant_lines(domain)]
    for turn in turns:
        for phrase in phrases:
            if f" {phrase} " in f" {turn.text} ":
                return f'exchange {turn.exchange}: speaks as the assistant ("{phrase}")'
        if _shares_span(turn.text, turn.previous_reply, COPY_SPAN_WORDS):
            return f"exchange {turn.exchange}: repeats the assistant's previous reply"
    return None


def over_word_limit(scenario: Scenario, turns: list[UserTurn]) -> str | None:
    """Where a user turn runs far past the persona's word limit (its voice broken), or None."""
    limit = scenario.persona.word_limit[1]
    for turn in turns:
        words = len(turn.text.split())
        if words > VOICE_BREAK_FACTOR * limit:
            return f"exchange {turn.exchange}: {words} words, the persona writes at most {limit}"
    return None


def _shares_span(text: str, other: str, words: int) -> bool:
    mine, theirs = text.split(), other.split()
    if len(mine) < words or len(theirs) < words:
        return False
    spans = {tuple(theirs[i : i + words]) for i in range(len(theirs) - words + 1)}
    return any(tuple(mine[i : i + words]) in spans for i in range(len(mine) - words + 1))


def flaw_answer(
    domain: Domain, scenario: Scenario, criterion: Criterion, flaw: str, turns: list[UserTurn]
) -> tuple[str, str]:
    """YES when one of the flaw's examples shows in a user turn; NA when NA is valid and the
    plan expected it less than once; else NO."""
    assignment = next((a for a in scenario.flaws if a.name == flaw), None)
    examples: tuple[str, ...] = ()
    if assignment is not None:
        found = domain.flaws.categories.get(assignment.category, {}).get(flaw)
        examples = found.examples if found is not None else ()
    for turn in turns:
        for example in examples:
            if normalise(example) and normalise(example) in turn.text:
                return "YES", f"exchange {turn.exchange} shows {flaw}"
    expected = (assignment.frequency if assignment else 0.0) * len(turns)
    if criterion.na_valid and expected < 1.0:
        return "NA", f"{flaw} expected {expected:.1f} times in {len(turns)} messages"
    return "NO", f"{flaw} never shows in the {len(turns)} user messages"


def user_side_answer(
    domain: Domain,
    scenario: Scenario,
    criterion_id: str,
    quality: float,
    prompt: str,
    rng: random.Random,
) -> tuple[str, str]:
    """(answer, reasoning) for one user-side criterion."""
    rubric = rubric_for(domain, scenario, "user")
    criterion = next((c for c in rubric.criteria if c.id == criterion_id), None) if rubric else None
    draw = rng.random()
    if criterion is None:
        return ("YES" if draw < quality else "NO"), "unknown criterion: drawn"
    turns = user_turns(domain, prompt)
    flaw = flaw_of(criterion_id)
    if flaw is not None:
        return flaw_answer(domain, scenario, criterion, flaw, turns)
    if _ABOUT_DISCLOSURE.search(criterion.question):
        found = disclosure(domain, turns)
        return ("NO", found) if found else ("YES", "no disclosure in any user turn")
    if _ABOUT_ROLE.search(criterion.question):
        found = role_reversal(domain, turns)
        return ("NO", found) if found else ("YES", "the user speaks only as the user")
    if _ABOUT_VOICE.search(criterion.question):
        found = over_word_limit(scenario, turns)
        if found:
            return "NO", found
    if criterion.gate:
        return "YES", "no cue for this gate in the user turns"
    if criterion.na_valid and rng.random() < NA_RATE:
        return "NA", "drawn"
    return ("YES" if draw < quality + DRAWN_YES_GAIN else "NO"), "drawn"
