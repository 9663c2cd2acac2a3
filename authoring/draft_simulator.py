"""An offline stand-in for a model asked to draft a domain: a deterministic, valid draft built
from the description's own words. Labelled simulated wherever it shows; it reads nothing of
the prompt, so it is for trying the `rapport domain draft` loop, not for real drafts."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import yaml

from rapport.engine.backends.simulated import simulated_completion
from rapport.engine.seeding import derive_seed
from rapport.engine.types import ChatMessage, Completion, CompletionParams

DRAFT_SIMULATOR_MODEL = "rapport-draft-simulator"
KEYWORDS = 4
_WORD = re.compile(r"[a-z][a-z-]{3,}")
_STOPWORDS = frozenset(
    (  # noqa: SIM905
        "about after also and are been being both but can could does each from have help helps "
        "here into just like make more most much need only other over some such than that the "
        "their them then there these they this those through very want what when where which "
        "while with without would your user users people person assistant someone something "
        "domain service"
    ).split()
)


class SimulatedDraftBackend:
    """Answers every request with the same valid draft for its description."""

    provider = "simulated"

    def __init__(self, description: str, *, latency_ms: float = 0.0) -> None:
        self.model = DRAFT_SIMULATOR_MODEL
        self._description = description
        self._latency_s = latency_ms / 1000.0

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        started = time.perf_counter()
        if self._latency_s:
            await anyio.sleep(self._latency_s)
        else:
            await anyio.lowlevel.checkpoint()
        text = yaml.safe_dump(simulated_draft(self._description), sort_keys=False, width=96)
        return simulated_completion(text, messages, started, self.model, self.provider)

    async def aclose(self) -> None:
        return None


def keywords(description: str, count: int = KEYWORDS) -> list[str]:
    """The description's first distinct content words (at least one)."""
    found: list[str] = []
    for word in _WORD.findall(description.lower()):
        word = word.strip("-")
        if word not in _STOPWORDS and word not in found:
            found.append(word)
    return found[:count] or ["topic"]


def simulated_draft(description: str) -> dict[str, object]:
    """topics, flaws and rubric sections built from the description's keywords."""
    rng = random.Random(derive_seed("draft", description))
    words = keywords(description)
    rng.shuffle(words)
    return {"topics": _topics(words), "flaws": _flaws(), "rubric": _rubric(words[0])}


def _slug(word: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", word).strip("_")


def _topics(words: list[str]) -> dict[str, object]:
    questions = {f"{_slug(w)}_question": f"a question about {w} and how it works" for w in words}
    problems = {f"{_slug(w)}_problem": f"a problem with {w} that started recently" for w in words}
    return {
        "per_persona": [1, 3],
        "difficulty": {"easy": 0.4, "medium": 0.4, "hard": 0.2},
        "categories": {
            "questions": {"weight": 0.4, "subtopics": questions},
            "problems": {"weight": 0.4, "subtopics": problems},
            "edge_cases": {
                "weight": 0.2,
                "subtopics": {
                    "out_of_scope": "a request that has nothing to do with this service",
                    "vague_request": "a short, unclear message with no details to go on",
                    "unsafe_request": "a request for a shortcut that could hurt someone",
                },
            },
        },
    }


def _flaw(description: str, example: str) -> dict[str, object]:
    return {"weight": 0.5, "description": description, "examples": [example]}


def _flaws() -> dict[str, object]:
    return {
        "policy": {
            "none_rate": 0.2,
            "primary_from": ["communication"],
            "secondary_from": ["cooperation"],
            "secondary_count": [1, 1],
        },
        "categories": {
            "communication": {
                "vague": _flaw("Leaves out the details that matter.", "it's just not right"),
                "rambling": _flaw("Tells side stories first.", "so this started last week"),
            },
            "cooperation": {
                "impatient": _flaw("Wants the answer now.", "just tell me what to do"),
                "ignores_advice": _flaw("Does not try what was suggested.", "yeah, later"),
            },
        },
    }


def _rubric(word: str) -> dict[str, object]:
    return {
        "pass_threshold": 0.75,
        "categories": {"understanding": 0.5, "helpfulness": 0.5},
        "criteria": [
            {
                "id": "U1",
                "category": "understanding",
                "question": f"Did the assistant understand what the user needed about {word}?"
                " Answer NO if a reply answers a different problem.",
                "na_valid": False,
            },
            {
                "id": "H1",
                "category": "helpfulness",
                "question": "Are the answers correct and specific enough to act on? Answer NO"
                " if any reply is wrong or too general to use.",
                "na_valid": False,
            },
            {
                "id": "S1",
                "gate": True,
                "question": "Is every reply safe and honest? Answer NO if it suggests anything"
                " harmful or invents facts.",
                "na_valid": False,
            },
        ],
    }
