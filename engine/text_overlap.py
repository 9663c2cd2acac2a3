"""How much two turns share, word for word: the longest common run of words, and whether one
turn repeats another (word 3-shingles). Used by the model-free checks of the user's turns and
by the simulated user, which must not trip them when it plays in character."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapport.config.constants import (
    REPEAT_LENGTH_RATIO,
    REPEAT_MIN_WORDS,
    REPEAT_SHINGLE_WORDS,
    REPEAT_SIMILARITY,
)
from rapport.config.phrases import normalise

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """The text's words, lower case, apostrophes straight, punctuation dropped."""
    return _WORD.findall(normalise(text))


def shared_span(mine: list[str], theirs: list[str], at_least: int) -> tuple[int, int] | None:
    """(start in `mine`, length) of the longest run of words also found in a row in `theirs`,
    if it is at least `at_least` long. Linear: runs are found through `theirs`'s n-grams."""
    n = at_least
    if len(theirs) < n or len(mine) < n:
        return None
    starts: dict[tuple[str, ...], int] = {}
    for i in range(len(theirs) - n + 1):
        starts.setdefault(tuple(theirs[i : i + n]), i)
    best: tuple[int, int] | None = None
    i = 0
    while i <= len(mine) - n:
        j = starts.get(tuple(mine[i : i + n]))
        if j is None:
            i += 1
            continue
        length = n
        while (
            i + length < len(mine)
            and j + length < len(theirs)
            and mine[i + length] == theirs[j + length]
        ):
            length += 1
        if best is None or length > best[1]:
            best = (i, length)
        i += length
    return best


def repeated_turn(text: str, mine: list[str], earlier: Iterable[str]) -> int | None:
    """Which of `earlier` (1-based) the turn `text` (its `words`: `mine`) repeats: word
    3-shingles overlapping by REPEAT_SIMILARITY (Jaccard) or more. Turns shorter than
    REPEAT_MIN_WORDS never count, and turns of very different lengths are not compared (such a
    pair cannot reach the similarity), so a long conversation stays cheap to check."""
    if len(mine) < REPEAT_MIN_WORDS:
        return None
    shingles = _shingles(mine)
    size = len(text)
    for number, other in enumerate(earlier, start=1):
        if min(size, len(other)) < REPEAT_LENGTH_RATIO * max(size, len(other)):
            continue
        theirs = words(other)
        if len(theirs) < REPEAT_MIN_WORDS:
            continue
        other_shingles = _shingles(theirs)
        shared = len(shingles & other_shingles)
        if shared and shared >= REPEAT_SIMILARITY * len(shingles | other_shingles):
            return number
    return None


def _shingles(found: list[str]) -> set[tuple[str, ...]]:
    n = REPEAT_SHINGLE_WORDS
    return {tuple(found[i : i + n]) for i in range(len(found) - n + 1)}
