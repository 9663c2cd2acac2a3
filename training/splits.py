"""Train / validation / test assignment by conversation (never by slice: no leakage)."""

from __future__ import annotations

import msgspec

from rapport.engine.seeding import derive_seed

SPLITS = ("train", "validation", "test")
_RESOLUTION = 1_000_000


class SplitFractions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    validation: float = 0.05
    test: float = 0.05


def split_of(conversation_id: str, seed: int, fractions: SplitFractions) -> str:
    """A conversation's split, from a hash of (seed, id): stable as the corpus grows."""
    draw = (derive_seed("split", seed, conversation_id) % _RESOLUTION) / _RESOLUTION
    if draw < fractions.test:
        return "test"
    if draw < fractions.test + fractions.validation:
        return "validation"
    return "train"
