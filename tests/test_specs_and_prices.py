"""Backend specs typed on a command line, and the price table behind the cost figures."""

from __future__ import annotations

import pytest

from rapport.config.backend_spec import parse_backend_spec
from rapport.config.errors import ConfigError
from rapport.config.prices import load_prices
from rapport.config.run import Price


@pytest.mark.parametrize(
    ("spec", "provider", "field", "value"),
    [
        ("simulated", "simulated", "latency_ms", 0.0),
        ("simulated:latency_ms=25", "simulated", "latency_ms", 25.0),
        ("openai:gpt-4o-mini", "openai", "model", "gpt-4o-mini"),
        ("openai:qwen@http://localhost:8000/v1", "openai", "base_url", "http://localhost:8000/v1"),
        ("anthropic:claude-haiku-4-5", "anthropic", "model", "claude-haiku-4-5"),
        ("gguf:/models/x.gguf", "llamacpp", "model_path", "/models/x.gguf"),
        ("llamacpp", "llamacpp", "model_path", None),
        (
            "command:claude -p --model haiku",
            "command",
            "command",
            ("claude", "-p", "--model", "haiku"),
        ),
    ],
)
def test_backend_specs(spec, provider, field, value):
    settings = parse_backend_spec(spec)
    assert settings.provider == provider
    assert getattr(settings, field) == value


@pytest.mark.parametrize(
    "spec",
    ["carrier-pigeon", "openai:", "gguf:", "simulated:latency_ms", "simulated:latency_ms=fast"],
)
def test_bad_backend_specs_are_one_line_errors(spec):
    with pytest.raises(ConfigError) as caught:
        parse_backend_spec(spec)
    assert "\n" not in str(caught.value) and "--backend" in str(caught.value)


def test_backend_spec_from_yaml(tmp_path):
    path = tmp_path / "coach.yaml"
    path.write_text(
        "provider: openai\nmodel: m\nbase_url: http://127.0.0.1:1/v1\nmax_in_flight: 4\n"
    )
    settings = parse_backend_spec(str(path))
    assert settings.max_in_flight == 4 and settings.model == "m"


def test_local_models_get_shorter_replies_by_default():
    assert parse_backend_spec("llamacpp").resolved_max_tokens() == 128
    assert parse_backend_spec("openai:m").resolved_max_tokens() == 512


def test_prices_match_the_longest_prefix_and_can_be_overridden():
    prices = load_prices({"gpt-4o-mini-custom": Price(input=1.0, output=2.0)})
    assert prices.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert prices.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    assert prices.cost("gpt-4o-mini-custom", 500_000, 500_000) == pytest.approx(1.5)
    assert prices.cost("my-own-model", 10, 10) is None
