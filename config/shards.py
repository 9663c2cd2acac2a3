"""Shard K of N of a plan (`rapport generate --shard K/N`): the scenarios with `index % N == K`,
and the share of each provider limit one of N processes may use, so N shards on one key stay
under the key's limit together (`rapport merge` joins the shards' files into one corpus)."""

from __future__ import annotations

import re

import msgspec

from rapport.config.backend_settings import BackendConfig
from rapport.config.errors import RapportError
from rapport.config.run import RunConfig

SPLIT_FIELDS = ("rpm", "tpm", "input_tpm", "output_tpm")  # per-minute rates, shared by a key
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*", re.ASCII)


class Shard(msgspec.Struct, frozen=True):
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def indices(self, start: int, stop: int) -> range:
        """This shard's scenario indices in `[start, stop)`."""
        first = start + (self.index - start) % self.count
        return range(first, max(first, stop), self.count)

    def size(self, start: int, stop: int) -> int:
        return len(self.indices(start, stop))


WHOLE_PLAN = Shard(0, 1)


def parse_shard(spec: str, shown: str = "--shard") -> Shard:
    """`K/N` as a Shard; anything else is one line naming what is wrong."""
    found = _SPEC.fullmatch(spec)
    if found is None:
        raise RapportError(f"{shown} {spec!r}: expected K/N, e.g. 0/4 (shard K of N, from 0)")
    k, n = int(found[1]), int(found[2])
    if n < 1:
        raise RapportError(f"{shown} {spec!r}: N must be at least 1")
    if k >= n:
        raise RapportError(f"{shown} {spec!r}: K must be below N (shards are 0 to {n - 1})")
    return Shard(k, n)


def split_backend(backend: BackendConfig, shard: Shard) -> BackendConfig:
    """The backend with each configured per-minute rate divided among the N shards, each
    replica's own rates too (every shard sends to every replica)."""
    changes: dict[str, object] = dict(_split_rates(backend, shard))
    replicas = getattr(backend, "replicas", ())
    if replicas:
        changes["replicas"] = tuple(
            msgspec.structs.replace(replica, **_split_rates(replica, shard)) for replica in replicas
        )
    return msgspec.structs.replace(backend, **changes) if changes else backend


def _split_rates(limits: msgspec.Struct, shard: Shard) -> dict[str, int]:
    return {
        field: max(1, value // shard.count)
        for field in SPLIT_FIELDS
        if (value := getattr(limits, field, None)) is not None
    }


def shard_settings(settings: RunConfig, shard: Shard) -> RunConfig:
    """The run config one shard runs with: with `shard_limits: split` (the default) every
    backend's rates, judges' included, and the dollar budget are its share of the whole."""
    if settings.shard_limits == "full" or shard.count == 1:
        return settings
    backends = msgspec.structs.replace(
        settings.backends,
        user_sim=split_backend(settings.backends.user_sim, shard),
        assistant=split_backend(settings.backends.assistant, shard),
    )
    judges = tuple(
        msgspec.structs.replace(judge, backend=split_backend(judge.backend, shard))
        for judge in settings.judges
    )
    budget = settings.budget_usd / shard.count if settings.budget_usd is not None else None
    return msgspec.structs.replace(settings, backends=backends, judges=judges, budget_usd=budget)
