"""How much two turns share, word for word: the longest common run of words, and whether one
turn repeats another (word 3-shingles). Used by the model-free checks of the user's turns and
by the simulated user, which must not trip them when it plays in character."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rapport.config.constants import (
    REPEAT_LENGTH_RATIO,
    REPEAT_MIN_WORDS,
    REPEAT_PROBE_CHARS,
    REPEAT_PROBE_MISSES,
    REPEAT_PROBES,
    REPEAT_SHINGLE_WORDS,
    REPEAT_SIMILARITY,
)
from rapport.config.phrases import APOSTROPHES

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """The text's words, lower case, apostrophes straight, punctuation dropped."""
    return _WORD.findall(text.lower().translate(APOSTROPHES))


def shared_span(mine: list[str], theirs: list[str], at_least: int) -> tuple[int, int] | None:
    """(start in `mine`, length) of the longest run of words also found in a row in `theirs`,
    if it is at least `at_least` long. Linear: runs are found through `theirs`'s n-grams."""
    n = at_least
    if len(theirs) < n or len(mine) < n:
        return None
    if set(_grams(theirs, n)).isdisjoint(_grams(mine, n)):  # the usual case, decided in C
        return None
    starts: dict[tuple[str, ...], int] = {}
    for i, gram in enumerate(_grams(theirs, n)):
        starts.setdefault(gram, i)
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


def repeated_turn(text: str, earlier: Iterable[str]) -> int | None:
    """Which of `earlier` (1-based) the turn `text` repeats: word 3-shingles overlapping by
    REPEAT_SIMILARITY (Jaccard) or more. Turns shorter than REPEAT_MIN_WORDS never count. Cheap
    on a long conversation: turns of very different lengths cannot reach the similarity and
    are skipped, the others are probed with slices of this turn's text (substring search, in
    C), and only a turn holding most of them has its words compared."""
    if len(text.split()) < REPEAT_MIN_WORDS:
        return None
    size = len(text)
    lowered = text.lower()
    step = max(1, (size - REPEAT_PROBE_CHARS) // REPEAT_PROBES)
    probes = {lowered[i : i + REPEAT_PROBE_CHARS] for i in range(0, size, step)}
    allowed_misses = int(len(probes) * REPEAT_PROBE_MISSES)
    shingles: set[tuple[str, ...]] | None = None
    for number, other in enumerate(earlier, start=1):
        length = len(other)
        if length < REPEAT_LENGTH_RATIO * size or size < REPEAT_LENGTH_RATIO * length:
            continue
        if not _holds_most(other.lower(), probes, allowed_misses):
            continue
        theirs = words(other)
        if len(theirs) < REPEAT_MIN_WORDS:
            continue
        if shingles is None:
            shingles = _shingles(words(text))
        other_shingles = _shingles(theirs)
        shared = len(shingles & other_shingles)
        if shared and shared >= REPEAT_SIMILARITY * len(shingles | other_shingles):
            return number
    return None


def _holds_most(text: str, probes: set[str], allowed_misses: int) -> bool:
    misses = 0
    for probe in probes:
        if probe not in text:
            misses += 1
            if misses > allowed_misses:
                return False
    return True


def _grams(found: list[str], n: int) -> Iterator[tuple[str, ...]]:
    """The runs of `n` words, in order (built in C by zip)."""
    return zip(*(found[i:] for i in range(n)), strict=False)


def _shingles(found: list[str]) -> set[tuple[str, ...]]:
    return set(_grams(found, REPEAT_SHINGLE_WORDS))
