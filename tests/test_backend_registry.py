"""Backends as a registry: `provider:` picks one Struct holding only that provider's fields
(no `provider:` is the in-process model), every provider has one builder, every spec form
decodes to its provider's Struct, and one helper fills in tokens a provider did not report."""

from __future__ import annotations

import sys
import typing

import anyio
import pytest

from rapport.config.backend_settings import (
    PROVIDERS,
    AnthropicConfig,
    BackendConfig,
    CommandConfig,
    LlamaCppConfig,
    NullConfig,
    OpenAIConfig,
    SimulatedConfig,
)
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.errors import ConfigError
from rapport.config.run import load_run_config
from rapport.engine.backend import usage_or_estimate
from rapport.engine.factory import BUILDERS, build_backend, build_gateways
from rapport.engine.types import ChatMessage, CompletionParams


def _load(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return load_run_config(path)


def test_every_provider_has_one_struct_and_one_builder():
    tags = {cls.__struct_config__.tag for cls in typing.get_args(BackendConfig)}
    assert tags == set(PROVIDERS) == set(BUILDERS)
    assert tags == {"llamacpp", "openai", "anthropic", "command", "simulated", "null"}
    for tag, cls in PROVIDERS.items():
        assert cls().provider == tag


def test_provider_key_picks_the_struct_and_no_key_is_the_in_process_model(tmp_path):
    config = _load(
        tmp_path,
        "backends:\n"
        "  user_sim: {model_path: model.gguf, n_ctx: 4096}\n"
        "  assistant: {provider: openai, model: m, base_url: 'http://127.0.0.1:9/v1', rpm: 60}\n"
        "judges:\n"
        "  - id: local\n"
        "  - id: quiet\n    backend: {threads: 2}\n"
        "  - id: sim\n    backend: {provider: simulated, quality: 0.5, latency_ms: 3}\n",
    )
    user, assistant = config.backends.user_sim, config.backends.assistant
    assert user == LlamaCppConfig(model_path="model.gguf", n_ctx=4096)
    assert assistant == OpenAIConfig(model="m", base_url="http://127.0.0.1:9/v1", rpm=60)
    local, quiet, sim = (judge.backend for judge in config.judges)
    assert local == LlamaCppConfig() and quiet == LlamaCppConfig(threads=2)
    assert sim == SimulatedConfig(quality=0.5, latency_ms=3)
    assert (user.provider, assistant.provider, sim.provider) == ("llamacpp", "openai", "simulated")


@pytest.mark.parametrize(
    ("backend", "field"),
    [
        ("{provider: simulated, model_path: x.gguf}", "model_path"),
        ("{provider: openai, model: m, latency_ms: 5}", "latency_ms"),
        ("{provider: command, command: [cat], base_url: 'http://x'}", "base_url"),
        ("{n_ctx: 512, quality: 0.5}", "quality"),  # no provider: llamacpp's fields only
        ("{provider: null, timeout_s: 3}", "timeout_s"),
    ],
)
def test_a_field_of_another_provider_is_a_one_line_error_naming_it(tmp_path, backend, field):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"backends:\n  assistant: {backend}\n")
    assert caught.value.key == "backends.assistant"
    assert f"unknown field {field}" in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_provider_names_the_provider_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "judges:\n  - id: j\n    backend: {provider: carrier-pigeon}\n")
    assert caught.value.key == "judges[0].backend.provider"
    assert "carrier-pigeon" in str(caught.value)


def test_shared_fields_are_every_providers(tmp_path):
    shared = "rpm: 60, tpm: 900, input_tpm: 5, output_tpm: 6, max_in_flight: 2, max_retries: 1"
    for provider in PROVIDERS:
        extra = ", model: m" if provider in ("openai", "anthropic") else ""
        config = _load(
            tmp_path, f"backends:\n  user_sim: {{provider: {provider}, {shared}{extra}}}\n"
        )
        settings = config.backends.user_sim
        assert (settings.rpm, settings.tpm, settings.input_tpm, settings.max_in_flight) == (
            60, 900, 5, 2,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("simulated", SimulatedConfig()),
        ("simulated:latency_ms=5,quality=0.5", SimulatedConfig(latency_ms=5, quality=0.5)),
        ("null", NullConfig()),
        ("null:reply=hello there", NullConfig(reply="hello there")),
        (
            "openai:gpt@http://127.0.0.1:8080/v1?max_in_flight=4&timeout_s=120",
            OpenAIConfig(
                model="gpt", base_url="http://127.0.0.1:8080/v1", max_in_flight=4, timeout_s=120
            ),
        ),
        ("anthropic:claude-x?input_tpm=9", AnthropicConfig(model="claude-x", input_tpm=9)),
        ("gguf:/models/a.gguf", LlamaCppConfig(model_path="/models/a.gguf")),
        ("llamacpp", LlamaCppConfig()),
        ("command:claude -p", CommandConfig(command=("claude", "-p"))),
    ],
)
def test_every_spec_form_decodes_to_its_providers_struct(spec, expected):
    assert parse_backend_spec(spec) == expected


def test_a_spec_option_of_another_provider_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_backend_spec("simulated:model_path=x.gguf")
    assert "unknown field model_path" in str(caught.value)
    with pytest.raises(ConfigError):
        parse_backend_spec("openai:m?provider=anthropic")  # the form fixes the provider


def test_a_yaml_spec_without_provider_is_the_in_process_model(tmp_path):
    path = tmp_path / "local.yaml"
    path.write_text("model_path: m.gguf\nthreads: 3\n")
    assert parse_backend_spec(str(path)) == LlamaCppConfig(model_path="m.gguf", threads=3)


def test_each_builder_builds_its_provider():
    environ = {"OPENAI_API_KEY": "k" * 12, "ANTHROPIC_API_KEY": "k" * 12}
    settings = [
        SimulatedConfig(quality=0.5),
        NullConfig(reply="fine"),
        OpenAIConfig(model="m"),
        AnthropicConfig(model="c"),
        CommandConfig(command=(sys.executable, "-c", "print(1)")),
        LlamaCppConfig(model_path="embedded"),
    ]
    for one in settings:
        backend = build_backend(one, environ, "run.yaml", "backends.assistant")
        assert backend.provider == one.provider
        anyio.run(backend.aclose)


def test_builders_keep_their_one_line_errors():
    with pytest.raises(ConfigError) as caught:
        build_backend(OpenAIConfig(), {}, "run.yaml", "backends.assistant")
    assert (caught.value.key, caught.value.problem) == (
        "backends.assistant.model",
        "is required for provider openai",
    )
    with pytest.raises(ConfigError) as caught:
        build_backend(CommandConfig(), {}, "run.yaml", "backends.user_sim")
    assert caught.value.key == "backends.user_sim.command"


def test_endpoints_group_roles_per_provider():
    from rapport.config.run import Backends

    same = build_gateways(Backends(NullConfig(), NullConfig(temperature=0.1)), {}, "r")
    assert same["user_sim"] is same["assistant"]
    apart = build_gateways(Backends(NullConfig(), NullConfig(reply="no")), {}, "r")
    assert apart["user_sim"] is not apart["assistant"]
    local = build_gateways(Backends(), {}, "r")["assistant"]
    assert local.limits.max_in_flight == LlamaCppConfig.default_in_flight


def test_usage_or_estimate_prefers_what_the_provider_reported():
    assert usage_or_estimate(400, "x" * 40, 123, 7) == (123, 7)
    assert usage_or_estimate(400, "x" * 40) == (100, 10)
    assert usage_or_estimate(400, "x" * 40, None, 7) == (100, 7)
    assert usage_or_estimate(0, "", object(), "9") == (1, 1)  # nothing usable: at least 1


def test_every_backend_that_reports_no_usage_estimates_the_same_way(tiny):
    from rapport.engine.backends.command_backend import CommandBackend, render_prompt

    messages = [ChatMessage("system", "s" * 30), ChatMessage("user", "u" * 50)]
    params = CompletionParams(max_tokens=20, temperature=0.0)
    echo = CommandBackend(
        argv=(sys.executable, "-c", "print('r' * 44)"), timeout_s=30, model="echo"
    )
    completion = anyio.run(echo.complete, messages, params)
    prompt = render_prompt(messages, params)
    assert (completion.prompt_tokens, completion.completion_tokens) == usage_or_estimate(
        len(prompt), "r" * 44
    )


@pytest.mark.parametrize(
    ("baseline", "candidate", "eval_id"),
    [  # ids an eval got before the union: it resumes under the same id
        ("simulated", "simulated:quality=0.9,latency_ms=150", "eval-25ec19bb8c"),
        (
            "openai:gpt@http://127.0.0.1:1/v1?max_in_flight=4&timeout_s=120",
            "anthropic:claude?input_tpm=9",
            "eval-3609798cb4",
        ),
        ("gguf:/m/a.gguf", "llamacpp", "eval-34b526ed81"),
        ("command:claude -p", "simulated", "eval-56cfb39216"),
    ],
)
def test_eval_ids_hash_the_settings_as_the_flat_struct_did(baseline, candidate, eval_id):
    from rapport.evaluation.held_out import eval_id_for

    user = parse_backend_spec("simulated")
    sides = parse_backend_spec(baseline), parse_backend_spec(candidate)
    assert eval_id_for("plan", *sides, user) == eval_id
