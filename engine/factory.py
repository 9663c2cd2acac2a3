"""Builds the gateway of each role from the run config; one gateway per distinct backend."""

from __future__ import annotations

from collections.abc import Mapping

from config.domain import Domain
from config.errors import ConfigError
from config.run import BackendConfig, Backends
from engine.backends.openai_backend import OpenAIBackend
from engine.backends.simulated import SimulatedBackend
from engine.gateway import Gateway

DEFAULT_OPENAI_KEY_ENV = "OPENAI_API_KEY"
KEYLESS_PLACEHOLDER = "not-needed"
ROLES = ("user_sim", "assistant")


def build_gateways(
    backends: Backends, domain: Domain, environ: Mapping[str, str], config_file: str
) -> dict[str, Gateway]:
    """A gateway per role; roles with identical settings share one gateway (and its limits)."""
    by_settings: dict[BackendConfig, Gateway] = {}
    gateways: dict[str, Gateway] = {}
    for role in ROLES:
        settings: BackendConfig = getattr(backends, role)
        if settings not in by_settings:
            key = f"backends.{role}"
            by_settings[settings] = _gateway(settings, domain, environ, config_file, key)
        gateways[role] = by_settings[settings]
    return gateways


def _gateway(
    settings: BackendConfig, domain: Domain, environ: Mapping[str, str], file: str, key: str
) -> Gateway:
    if settings.provider == "simulated":
        backend = SimulatedBackend(domain, latency_ms=settings.latency_ms, model=settings.model)
    else:
        if not settings.model:
            raise ConfigError(file, f"{key}.model", "is required for provider openai")
        backend = OpenAIBackend(
            model=settings.model,
            api_key=_api_key(settings, environ, file, key),
            base_url=settings.base_url,
            timeout_s=settings.timeout_s,
        )
    return Gateway(backend, rpm=settings.rpm, tpm=settings.tpm, max_retries=settings.max_retries)


def _api_key(settings: BackendConfig, environ: Mapping[str, str], file: str, key: str) -> str:
    """The key comes from the environment only; a local server (base_url set and no
    api_key_env) may run without one."""
    variable = settings.api_key_env or DEFAULT_OPENAI_KEY_ENV
    value = environ.get(variable, "").strip()
    if value:
        return value
    if settings.base_url is not None and settings.api_key_env is None:
        return KEYLESS_PLACEHOLDER
    raise ConfigError(
        file, key, f"environment variable {variable} is not set (the API key is read from it)"
    )
