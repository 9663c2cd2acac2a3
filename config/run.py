"""Run settings (RUN.yaml): which backend plays each role, limits, and engine knobs.
(One backend's settings: config/backend_settings.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from rapport.config import constants
from rapport.config.backend_settings import (
    BackendConfig,
    LlamaCppConfig,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)
from rapport.config.decoding import decode, read_yaml
from rapport.config.errors import ConfigError

_SECRET_KEYS = frozenset({"api_key", "apikey", "token", "secret", "password"})


class Backends(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The backend of each role; a role left out runs the embedded SmolLM2 model in process."""

    user_sim: BackendConfig = LlamaCppConfig()
    assistant: BackendConfig = LlamaCppConfig()


JudgeMode = Literal["per_criterion", "batched"]
PassRule = Literal["all", "majority", "mean"]
# `generate --shard K/N`: split gives each shard limit // N of every configured rate (N processes
# on one key); full gives each the whole limit (each shard on a key or replica of its own).
ShardLimits = Literal["split", "full"]


class JudgeConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One judge: a backend and model answering the domain's rubric.

    `per_criterion` (default, as the seed: more accurate) makes one call per criterion;
    `batched` asks all criteria in one call (cheaper). `context_tokens` is the judge's context
    limit: longer transcripts are judged over windows of exchanges, never silently cut.
    """

    id: str
    backend: BackendConfig = LlamaCppConfig()
    mode: JudgeMode = "per_criterion"
    context_tokens: PositiveInt | None = None
    max_tokens: PositiveInt = 400
    batch: bool = False  # through the provider's batch API (cheaper, slower; `judge --batch`)


class StoreSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How the single writer batches rows into transactions."""

    flush_rows: PositiveInt = constants.STORE_FLUSH_ROWS
    flush_interval_s: PositiveFloat = constants.STORE_FLUSH_INTERVAL_S


class Price(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """US dollars per million tokens. Cache and batch prices left out cost what `input` and
    `output` do (no discount is assumed that the table does not state)."""

    input: NonNegativeFloat
    output: NonNegativeFloat
    cache_read: NonNegativeFloat | None = None  # input tokens read from the prompt cache
    cache_write: NonNegativeFloat | None = None  # input tokens written to it
    batch_input: NonNegativeFloat | None = None  # through a batch API
    batch_output: NonNegativeFloat | None = None


class RunConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Everything `rapport generate` reads from RUN.yaml; command-line flags override it."""

    domain: str | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=constants.MAX_SEED)] = constants.DEFAULT_SEED
    max_active: Annotated[int, msgspec.Meta(ge=1, le=constants.MAX_ACTIVE)] = (
        constants.DEFAULT_MAX_ACTIVE
    )
    turns: Annotated[int, msgspec.Meta(ge=1, le=constants.MAX_TURNS)] | None = None
    retry_failed: bool = True
    backends: Backends = Backends()
    judges: tuple[JudgeConfig, ...] = ()
    pass_rule: PassRule = "all"  # across judges: all pass, a majority pass, or mean score
    store: StoreSettings = StoreSettings()
    # model -> price, over the shipped table (config/prices.yaml)
    prices: dict[str, Price] = msgspec.field(default_factory=dict)
    cache: bool = True  # prefix-stable prompts sent with the providers' prompt-caching hints
    budget_usd: PositiveFloat | None = None  # no call starts that could pass it (--max-cost)
    shard_limits: ShardLimits = "split"  # a shard's share of each rate (config/shards.py)


def api_key_env_names(settings: RunConfig, *more: BackendConfig) -> tuple[str, ...]:
    """The variables this run reads keys from (their values are redacted everywhere)."""
    backends = (
        settings.backends.user_sim,
        settings.backends.assistant,
        *(judge.backend for judge in settings.judges),
        *more,
    )
    names = (getattr(backend, "api_key_env", None) for backend in backends)
    return tuple(name for name in names if name)


def load_run_config(path: Path | None) -> RunConfig:
    """Decode RUN.yaml (or the defaults when no file is given)."""
    if path is None:
        return RunConfig()
    shown = str(path)
    data = read_yaml(path, shown)
    _refuse_inline_secrets(data, shown)
    config = decode(data, RunConfig, shown)
    if config.domain is not None and not Path(config.domain).is_absolute():
        config = msgspec.structs.replace(
            config, domain=str((path.parent / config.domain).resolve())
        )
    return config


def _refuse_inline_secrets(data: object, shown: str) -> None:
    backends = data.get("backends") if isinstance(data, dict) else None
    if not isinstance(backends, dict):
        return
    for role, settings in backends.items():
        if isinstance(settings, dict):
            for key in settings:
                if str(key).lower() in _SECRET_KEYS:
                    raise ConfigError(
                        shown,
                        f"backends.{role}.{key}",
                        "secrets come from the environment only: name the variable in api_key_env",
                    )
