"""Builds the gateways of a run from its config: one gateway per (provider, model, base_url),
shared by every role that uses it, so they share its limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from rapport.config.backend_settings import (
    AnthropicConfig,
    BackendConfig,
    CommandConfig,
    LlamaCppConfig,
    NullConfig,
    OpenAIConfig,
    SimulatedConfig,
)
from rapport.config.errors import ConfigError
from rapport.config.prices import PriceTable
from rapport.config.run import Backends, Price
from rapport.config.secrets import Redactor, looks_like_secret
from rapport.engine.backend import Backend
from rapport.engine.gateway import Gateway, GatewayLimits

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
KEYLESS_PLACEHOLDER = "not-needed"
ROLES = ("user_sim", "assistant")
_LIMIT_FIELDS = ("rpm", "tpm", "input_tpm", "output_tpm", "max_in_flight")


def gateway_key(settings: BackendConfig) -> tuple[object, ...]:
    """What identifies one provider endpoint (and so one set of limits). Simulated backends of
    different quality or latency are different "models"."""
    return settings.endpoint()


def build_gateways(
    backends: Backends,
    environ: Mapping[str, str],
    config_file: str,
    prices: PriceTable | None = None,
) -> dict[str, Gateway]:
    """A gateway per role; roles on the same endpoint share one gateway."""
    roles = {role: getattr(backends, role) for role in ROLES}
    return build_role_gateways(roles, environ, config_file, prices=prices)


def build_role_gateways(
    roles: Mapping[str, BackendConfig],
    environ: Mapping[str, str],
    config_file: str,
    key_prefix: str = "backends.",
    *,
    prices: PriceTable | None = None,
) -> dict[str, Gateway]:
    """A gateway per named role; roles on the same endpoint share one gateway (and its limits)."""
    groups: dict[tuple[object, ...], list[tuple[str, BackendConfig]]] = {}
    for role, settings in roles.items():
        groups.setdefault(gateway_key(settings), []).append((role, settings))
    gateways: dict[str, Gateway] = {}
    for members in groups.values():
        first_role, first = members[0]
        key = f"{key_prefix}{first_role}"
        limits = _shared_limits(members, config_file, key_prefix)
        gateway = build_gateway(
            first, limits, environ, config_file, key, price=price_of(first, prices)
        )
        for role, _ in members:
            gateways[role] = gateway
    return gateways


def build_gateway(
    settings: BackendConfig,
    limits: GatewayLimits,
    environ: Mapping[str, str],
    file: str,
    key: str,
    *,
    price: Price | None = None,
) -> Gateway:
    """A gateway around a new backend built from `settings`; `price` (see `price_of`) makes
    each completion's cost."""
    return Gateway(
        build_backend(settings, environ, file, key),
        limits,
        max_retries=settings.max_retries,
        backoff_min_s=settings.backoff_min_s,
        backoff_max_s=settings.backoff_max_s,
        # Replicas keep their own limits: nothing to learn for the set as a whole.
        adaptive=settings.adaptive and not getattr(settings, "replicas", ()),
        no_success_stop_s=settings.no_success_stop_s,
        redactor=Redactor.from_environ(environ, [getattr(settings, "api_key_env", None) or ""]),
        price=price,
        timeout_s=getattr(settings, "timeout_s", None),  # HTTP APIs and commands have one
    )


def price_of(settings: BackendConfig, prices: PriceTable | None) -> Price | None:
    """The price of the model `settings` name (None: no table, no model, or an unknown one)."""
    model = getattr(settings, "model", None)
    if prices is None or not model:
        return None
    return prices.price_for(model)


def limits_of(settings: BackendConfig) -> GatewayLimits:
    """The limits one backend's settings ask for (in-process models get a cap of their own)."""
    return _shared_limits([("judge", settings)], "")


def _shared_limits(
    members: list[tuple[str, BackendConfig]], config_file: str, key_prefix: str = "backends."
) -> GatewayLimits:
    """Limits of roles sharing a gateway must agree (a field set by one role applies to all):
    one endpoint has one set of limits, so two different values are refused, not guessed."""
    merged: dict[str, int | None] = {}
    for field in _LIMIT_FIELDS:
        each = ((role, getattr(s, field, None)) for role, s in members)
        set_by = [(role, value) for role, value in each if value is not None]
        values = {value for _, value in set_by}
        if len(values) > 1:
            roles = " and ".join(role for role, _ in members)
            culprit = next(role for role, value in set_by if value != set_by[0][1])
            asked = " and ".join(f"{value} ({role})" for role, value in set_by)
            raise ConfigError(
                config_file,
                f"{key_prefix}{culprit}.{field}",
                f"{roles} share one endpoint ({_endpoint(members[0][1])}) and so its limits, "
                f"but set {field} to {asked}: set it on one role only, or make them agree",
            )
        merged[field] = values.pop() if values else None
    if merged["max_in_flight"] is None:
        merged["max_in_flight"] = members[0][1].default_in_flight
    return GatewayLimits(**merged)


def _endpoint(settings: BackendConfig) -> str:
    model, base_url = getattr(settings, "model", ""), getattr(settings, "base_url", None)
    name = f"{settings.provider}:{model}" if model else settings.provider
    return f"{name} at {base_url}" if base_url else name


class BuildContext(msgspec.Struct, frozen=True):
    """What a builder may need beyond its settings; `file` and `key` name them in errors.
    No domain: a simulated backend reads it from each call's hints."""

    environ: Mapping[str, str]
    file: str
    key: str


def _simulated(settings: SimulatedConfig, at: BuildContext) -> Backend:
    from rapport.engine.backends.simulated import SimulatedBackend
    from rapport.engine.backends.simulated_faults import UserFaults

    faults = UserFaults(
        breaks=settings.user_breaks,
        copies=settings.user_copies,
        discloses=settings.user_discloses,
        coaches=settings.user_coaches,
        repeats=settings.user_repeats,
        rambles=settings.user_rambles,
        ignores_flaw=settings.user_ignores_flaw,
    )
    return SimulatedBackend(
        latency_ms=settings.latency_ms,
        model=settings.model,
        quality=settings.quality,
        faults=faults,
        topic_quality=settings.topic_quality,
    )


def _null(settings: NullConfig, at: BuildContext) -> Backend:
    from rapport.engine.backends.null_backend import NullBackend

    return NullBackend(reply=settings.reply, model=settings.model)


def _openai(settings: OpenAIConfig, at: BuildContext) -> Backend:
    from rapport.engine.backends.openai_backend import OpenAIBackend

    return _hosted(OpenAIBackend, settings, at)


def _anthropic(settings: AnthropicConfig, at: BuildContext) -> Backend:
    from rapport.engine.backends.anthropic_backend import AnthropicBackend

    return _hosted(AnthropicBackend, settings, at)


def _hosted(
    backend: Callable[..., Backend], settings: OpenAIConfig | AnthropicConfig, at: BuildContext
) -> Backend:
    """An HTTP API's backend: a model is required, the key comes from the environment."""
    if not settings.model:
        raise ConfigError(
            at.file, f"{at.key}.model", f"is required for provider {settings.provider}"
        )
    if settings.replicas:
        return _replica_set(backend, settings, at)
    return backend(
        model=settings.model,
        api_key=_api_key(settings, at.environ, at.file, at.key),
        base_url=settings.base_url,
        timeout_s=settings.timeout_s,
    )


def _replica_set(
    backend: Callable[..., Backend], settings: OpenAIConfig | AnthropicConfig, at: BuildContext
) -> Backend:
    """One client per replica, each with its own limits, behind one backend."""
    from rapport.engine.replicas import Replica, ReplicaSet

    replicas = []
    for index, replica in enumerate(settings.replicas):
        own = msgspec.structs.replace(
            settings,
            base_url=replica.base_url or settings.base_url,
            api_key_env=replica.api_key_env or settings.api_key_env,
            replicas=(),
        )
        key = f"{at.key}.replicas[{index}]"
        client = backend(
            model=own.model,
            api_key=_api_key(own, at.environ, at.file, key),
            base_url=own.base_url,
            timeout_s=own.timeout_s,
        )
        name = own.base_url or f"key:{own.api_key_env or DEFAULT_KEY_ENV[own.provider]}"
        if replica.base_url is None and replica.api_key_env is not None and own.base_url:
            name = f"{own.base_url} key:{replica.api_key_env}"
        limits = GatewayLimits(
            rpm=replica.rpm,
            tpm=replica.tpm,
            input_tpm=replica.input_tpm,
            output_tpm=replica.output_tpm,
            max_in_flight=replica.max_in_flight,
        )
        replicas.append(Replica(name, client, limits))
    return ReplicaSet(replicas)


def _llamacpp(settings: LlamaCppConfig, at: BuildContext) -> Backend:
    from rapport.engine.backends.llamacpp_backend import LlamaCppBackend, resolve_model_path

    return LlamaCppBackend(
        model_path=resolve_model_path(settings.model_path, at.file, f"{at.key}.model_path"),
        n_ctx=settings.n_ctx,
        threads=settings.threads,
        prefix_cache_mb=settings.prefix_cache_mb,
        stop=settings.stop,
        end_nudge=settings.end_nudge,
    )


def _command(settings: CommandConfig, at: BuildContext) -> Backend:
    from rapport.engine.backends.command_backend import CommandBackend

    if not settings.command:
        raise ConfigError(at.file, f"{at.key}.command", "is required for provider command")
    return CommandBackend(argv=settings.command, timeout_s=settings.timeout_s, model=settings.model)


# provider -> builder. Optional providers' modules are imported only when one is built.
BUILDERS: dict[str, Callable[[Any, BuildContext], Backend]] = {
    "simulated": _simulated,
    "null": _null,
    "openai": _openai,
    "anthropic": _anthropic,
    "llamacpp": _llamacpp,
    "command": _command,
}


def build_backend(
    settings: BackendConfig, environ: Mapping[str, str], file: str, key: str
) -> Backend:
    """One backend from its settings, by its provider's builder."""
    builder = BUILDERS.get(settings.provider)
    if builder is None:
        raise ConfigError(file, f"{key}.provider", f"unknown provider {settings.provider!r}")
    return builder(settings, BuildContext(environ, file, key))


def _api_key(
    settings: OpenAIConfig | AnthropicConfig, environ: Mapping[str, str], file: str, key: str
) -> str:
    """The key comes from the environment only; a local server (base_url set and no
    api_key_env) may run without one."""
    if settings.api_key_env is not None and looks_like_secret(settings.api_key_env):
        raise ConfigError(
            file,
            f"{key}.api_key_env",
            "is not the name of an environment variable (not shown, in case it is the key "
            "itself): name the variable that holds the key, e.g. OPENAI_API_KEY",
        )
    variable = settings.api_key_env or DEFAULT_KEY_ENV[settings.provider]
    value = environ.get(variable, "").strip()
    if value:
        return value
    if settings.base_url is not None and settings.api_key_env is None:
        return KEYLESS_PLACEHOLDER
    raise ConfigError(
        file, key, f"environment variable {variable} is not set (the API key is read from it)"
    )
