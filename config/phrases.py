"""Phrase lists matched against free text: lower case, whole words, curly apostrophes folded,
so a domain's `simulator_checks` phrases match however a model happens to type them."""

from __future__ import annotations

import functools
import re

APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
# A phrase starts and ends at a word boundary (letters, digits and apostrophes make words).
_EDGE_BEFORE = r"(?<![a-z0-9'])"
_EDGE_AFTER = r"(?![a-z0-9'])"


def normalise(text: str) -> str:
    """Lower case, apostrophes straight, runs of white space as one space."""
    return " ".join(text.lower().translate(APOSTROPHES).split())


@functools.lru_cache(maxsize=64)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern finding any of `phrases` in normalised text (None: no phrases). Longer
    phrases first, so the evidence is the most specific one."""
    cleaned = sorted({normalise(p) for p in phrases if p.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    body = "|".join(re.escape(p) for p in cleaned)
    return re.compile(f"{_EDGE_BEFORE}(?:{body}){_EDGE_AFTER}")


def find_phrase(phrases: tuple[str, ...], normalised: str) -> str | None:
    """The first of `phrases` found in `normalised` text, or None."""
    pattern = phrase_pattern(phrases)
    found = pattern.search(normalised) if pattern is not None else None
    return found.group(0) if found else None
