"""Short backend specs typed on a command line: `simulated`, `simulated:latency_ms=5`,
`openai:MODEL[@BASE_URL][?key=value&...]` (e.g. `?max_in_flight=4`), `anthropic:MODEL`,
`gguf:PATH`, `llamacpp`, `command:CLI ARGS`, or a YAML file holding one backend's settings."""

from __future__ import annotations

import shlex
from pathlib import Path

import msgspec

from rapport.config.decoding import decode, read_yaml
from rapport.config.errors import ConfigError
from rapport.config.run import BackendConfig
from rapport.config.urls import url_problem

SPEC_FORMS = (
    "simulated[:key=value,...]",
    "null",
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
    if kind == "null" and not rest:
        return BackendConfig(provider="null")
    if kind == "simulated":
        return _with_options(BackendConfig(provider="simulated"), rest, shown_as)
    if kind in ("openai", "anthropic"):
        rest, _, options = rest.partition("?")
        model, _, base_url = rest.partition("@")
        if not model:
            raise ConfigError(shown_as, spec, f"{kind} needs a model: {kind}:MODEL[@BASE_URL]")
        problem = url_problem(base_url) if base_url else None
        if problem:
            raise ConfigError(shown_as, spec, f"{problem} (form: {kind}:MODEL@BASE_URL)")
        base = BackendConfig(provider=kind, model=model, base_url=base_url or None)
        return _with_options(base, options.replace("&", ","), shown_as)
    if kind == "gguf":
        if not rest:
            raise ConfigError(shown_as, spec, "gguf needs a path: gguf:PATH")
        return BackendConfig(provider="llamacpp", model_path=rest)
    if kind == "llamacpp" and not rest:
        return BackendConfig(provider="llamacpp")
    if kind == "command":
        argv = tuple(shlex.split(rest))
        if not argv:
            raise ConfigError(shown_as, spec, "command needs a command line: command:CLI ARGS")
        return BackendConfig(provider="command", command=argv)
    raise ConfigError(shown_as, spec, f"unknown backend spec (forms: {', '.join(SPEC_FORMS)})")


def _with_options(base: BackendConfig, options: str, shown_as: str) -> BackendConfig:
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
    try:
        return msgspec.convert(merged, BackendConfig, strict=False)
    except msgspec.ValidationError as error:
        raise ConfigError(shown_as, options, str(error).replace("`", "")) from None
