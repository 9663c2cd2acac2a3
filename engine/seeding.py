"""Stable seeds derived from names, identical across processes and Python versions."""

from __future__ import annotations

from hashlib import blake2b


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the given parts (unlike `hash()`, stable across runs)."""
    text = "\x1f".join(map(str, parts))  # map, not a generator: this runs per turn
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def short_hash(*parts: object, length: int = 8) -> str:
    """A short hex digest of the given parts, for ids."""
    text = "\x1f".join(map(str, parts))
    return blake2b(text.encode(), digest_size=length // 2).hexdigest()
