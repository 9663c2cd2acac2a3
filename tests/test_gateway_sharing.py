"""Roles on one endpoint (same provider, model and base_url) share one gateway, and so one set
of limits; two different limits for one endpoint are refused in one line, never guessed."""

from __future__ import annotations

import duckdb
import pytest

from rapport.config.backend_settings import OpenAIConfig
from rapport.config.errors import ConfigError
from rapport.config.run import BackendConfig, Backends
from rapport.engine.factory import build_gateways, build_role_gateways
from rapport.fakes.provider import running_fake_provider
from rapport.stages.generate import GenerateRequest, generate
from tests.conftest import rapport

URL = "http://127.0.0.1:9/v1"  # never called: building gateways makes no request
LIMITS = ("rpm", "tpm", "input_tpm", "output_tpm", "max_in_flight")


def _openai(model: str = "shared-model", base_url: str = URL, **settings) -> BackendConfig:
    return OpenAIConfig(model=model, base_url=base_url, **settings)


def _gateways(user_sim: BackendConfig, assistant: BackendConfig):
    return build_gateways(Backends(user_sim=user_sim, assistant=assistant), {}, "run.yaml")


def test_roles_on_one_endpoint_share_one_gateway():
    # Sampling settings belong to the role, not the endpoint: they do not split the gateway.
    gateways = _gateways(_openai(temperature=1.2), _openai(temperature=0.3, max_tokens=50))
    assert gateways["user_sim"] is gateways["assistant"]


@pytest.mark.parametrize(
    "assistant",
    [_openai(model="other-model"), _openai(base_url="http://127.0.0.1:8/v1")],
    ids=["other model", "other base_url"],
)
def test_roles_on_different_endpoints_get_a_gateway_each(assistant):
    gateways = _gateways(_openai(), assistant)
    assert gateways["user_sim"] is not gateways["assistant"]


def test_a_limit_set_by_one_role_holds_for_every_role_on_its_endpoint():
    gateways = _gateways(_openai(rpm=60), _openai(tpm=90_000))
    limits = gateways["assistant"].limits
    assert (limits.rpm, limits.tpm) == (60, 90_000)


def test_the_same_limit_set_by_both_roles_is_accepted():
    gateways = _gateways(_openai(rpm=60), _openai(rpm=60))
    assert gateways["user_sim"] is gateways["assistant"]
    assert gateways["user_sim"].limits.rpm == 60


def test_different_limits_on_different_endpoints_are_kept_apart():
    gateways = _gateways(_openai(rpm=60), _openai(model="other-model", rpm=600))
    assert (gateways["user_sim"].limits.rpm, gateways["assistant"].limits.rpm) == (60, 600)


@pytest.mark.parametrize("field", LIMITS)
def test_conflicting_limits_for_one_endpoint_are_refused_naming_both(field):
    with pytest.raises(ConfigError) as caught:
        _gateways(_openai(**{field: 10}), _openai(**{field: 20}))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"run.yaml: backends.assistant.{field}: ")
    assert f"{field} to 10 (user_sim) and 20 (assistant)" in message
    assert f"openai:shared-model at {URL}" in message


def test_eval_sides_on_one_endpoint_share_a_gateway_and_a_conflict_names_the_side():
    sides = {"user_sim": _openai(model="user"), "baseline": _openai(), "candidate": _openai()}
    gateways = build_role_gateways(sides, {}, "eval", "")
    assert gateways["baseline"] is gateways["candidate"] is not gateways["user_sim"]
    sides["candidate"] = _openai(rpm=5)
    sides["baseline"] = _openai(rpm=7)
    with pytest.raises(ConfigError, match=r"^eval: candidate\.rpm: baseline and candidate share"):
        build_role_gateways(sides, {}, "eval", "")


@pytest.mark.slow
def test_the_command_line_refuses_conflicting_limits_in_one_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "backends:\n"
        f"  user_sim: {{provider: openai, model: m, base_url: '{URL}', rpm: 60}}\n"
        f"  assistant: {{provider: openai, model: m, base_url: '{URL}', rpm: 120}}\n"
    )
    db = tmp_path / "rapport.duckdb"
    result = rapport("generate", "--db", str(db), "--count", "1", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{config}: backends.assistant.rpm:" in lines[0]
    assert "60 (user_sim) and 120 (assistant)" in lines[0]
    assert not db.exists()


def test_a_run_sends_both_roles_through_the_one_shared_gateway(tmp_path, db_path):
    with running_fake_provider() as (base_url, state):
        config = tmp_path / "run.yaml"
        config.write_text(
            "backends:\n"
            f"  user_sim: {{provider: openai, model: shared, base_url: '{base_url}', rpm: 6000}}\n"
            f"  assistant: {{provider: openai, model: shared, base_url: '{base_url}'}}\n"
        )
        summary = generate(GenerateRequest(db=db_path, count=3, turns=2, config=config), environ={})
    assert summary.complete == 3
    with duckdb.connect(str(db_path), read_only=True) as conn:
        stats = conn.execute(
            "SELECT roles, requests, rpm_limit FROM gateway_stats WHERE run_id = ?",
            [summary.run_id],
        ).fetchall()
    assert stats == [(["user_sim", "assistant"], 3 * 2 * 2, 6000)]
    assert state.completed == 3 * 2 * 2
