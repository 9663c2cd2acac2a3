"""Short backend specs typed on a command line: `simulated`, `simulated:latency_ms=5`,
`null`, `openai:MODEL[@BASE_URL][?key=value&...]` (e.g. `?max_in_flight=4`), `anthropic:MODEL`,
`gguf:PATH`, `llamacpp`, `command:CLI ARGS`, or a YAML file holding one backend's settings."""

from __future__ import annotations

import shlex
from pathlib import Path

import msgspec

from rapport.config.backend_settings import (
    PROVIDERS,
    BackendBase,
    BackendConfig,
    CommandConfig,
    LlamaCppConfig,
    NullConfig,
    SimulatedConfig,
)
from rapport.config.decoding import decode, read_yaml
from rapport.config.errors import ConfigError
from rapport.config.urls import url_problem

SPEC_FORMS = (
    "simulated[:key=value,...]",
    "null[:key=value,...]",
    "openai:MODEL[@BASE_URL][?key=value&...]",
    "anthropic:MODEL[@BASE_URL][?key=value&...]",
    "gguf:PATH",
    "llamacpp",
    "command:CLI ARGS",
    "FILE.yaml",
)


def parse_backend_spec(spec: str, shown_as: str = "--backend") -> BackendConfig:
    """Decode a spec into BackendConfig; a bad spec is a one-line ConfigError."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if spec.endswith((".yaml", ".yml")):
        return decode(read_yaml(Path(spec), spec), BackendConfig, spec)
    if kind == "null":
        return _with_options(NullConfig(), rest, shown_as)
    if kind == "simulated":
        return _with_options(SimulatedConfig(), rest, shown_as)
    if kind in ("openai", "anthropic"):
        rest, _, options = rest.partition("?")
        model, _, base_url = rest.partition("@")
        if not model:
            raise ConfigError(shown_as, spec, f"{kind} needs a model: {kind}:MODEL[@BASE_URL]")
        problem = url_problem(base_url) if base_url else None
        if problem:
            raise ConfigError(shown_as, spec, f"{problem} (form: {kind}:MODEL@BASE_URL)")
        base = PROVIDERS[kind](model=model, base_url=base_url or None)  # type: ignore[call-arg]
        return _with_options(base, options.replace("&", ","), shown_as)
    if kind == "gguf":
        if not rest:
            raise ConfigError(shown_as, spec, "gguf needs a path: gguf:PATH")
        return LlamaCppConfig(model_path=rest)
    if kind == "llamacpp" and not rest:
        return LlamaCppConfig()
    if kind == "command":
        argv = tuple(shlex.split(rest))
        if not argv:
            raise ConfigError(shown_as, spec, "command needs a command line: command:CLI ARGS")
        return CommandConfig(command=argv)
    raise ConfigError(shown_as, spec, f"unknown backend spec (forms: {', '.join(SPEC_FORMS)})")


def _with_options(base: BackendBase, options: str, shown_as: str) -> BackendConfig:
    if not options:
        return base
    fields: dict[str, str] = {}
    for item in options.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                shown_as, item, "options are key=value, separated by commas (or & after ?)"
            )
        fields[key.strip()] = value.strip()
    merged = {**msgspec.structs.asdict(base), **fields}
    try:  # the spec's kind fixes the provider: options set only that provider's own fields
        return msgspec.convert(merged, type(base), strict=False)  # type: ignore[return-value]
    except msgspec.ValidationError as error:
        raise ConfigError(shown_as, options, str(error).replace("`", "")) from None
