"""`rapport bench cost` at toy size, as a user runs it: the real engine and SDKs against each
API's fake provider, caching off vs on, figures into cost.json."""

from __future__ import annotations

import json

import pytest

from tests.conftest import rapport

pytestmark = pytest.mark.slow


def test_bench_cost_measures_cache_reads_and_the_input_cost_ratio(tmp_path):
    out = tmp_path / "results"
    result = rapport(
        "bench", "cost", "--out", str(out), "--conversations", "2", "--exchanges", "4",
        "--reply-tokens", "300",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "cost.json").read_text())
    cases = {(case["api"], case["cache"]): case for case in report["cases"]}
    assert set(cases) == {(api, cache) for api in ("openai", "anthropic") for cache in (0, 1)}
    for api in ("openai", "anthropic"):
        off, on = cases[(api, False)], cases[(api, True)]
        assert off["requests"] == on["requests"] == 2 * 4 * 2  # both roles, every exchange
        # (the first conversation is a pilot run, the second the main run, one plan)
        assert off["input_tokens"] == on["input_tokens"]  # the same plan, the same prompts
        assert off["cache_read_tokens"] == off["cache_write_tokens"] == 0
        for case in (off, on):  # Rapport's own accounting agrees with the provider's
            stored = case["stored"]
            assert stored["messages"] == case["requests"]
            assert stored["prompt_tokens"] == case["input_tokens"]
            assert stored["cache_read_tokens"] == case["cache_read_tokens"]
            assert stored["cache_write_tokens"] == case["cache_write_tokens"]
            assert stored["cost_usd"] == pytest.approx(
                case["input_cost_usd"] + case["output_cost_usd"]
            )
    openai_on, anthropic_on = cases[("openai", True)], cases[("anthropic", True)]
    assert openai_on["cache_read_tokens"] > 0
    assert anthropic_on["cache_read_tokens"] > 0 and anthropic_on["cache_write_tokens"] > 0
    savings = {saving["api"]: saving for saving in report["savings"]}
    assert 0 < savings["openai"]["input_cost_ratio"] < 1
    assert 0 < savings["anthropic"]["input_cost_ratio"] < 1
    assert savings["openai"]["cache_read_share"] == pytest.approx(
        openai_on["cache_read_tokens"] / openai_on["input_tokens"]
    )
    judges = {judge["api"]: judge for judge in report["judges"]}
    assert set(judges) == {"openai", "anthropic"}
    for judge in judges.values():  # the same questions, at the batch price
        assert judge["live"]["requests"] == judge["batch"]["requests"] > 0
        assert judge["live"]["prompt_tokens"] == judge["batch"]["prompt_tokens"]
        assert judge["batches"] >= 1
        assert judge["batch_over_live"] == pytest.approx(0.5)  # the shipped batch prices
    for (api, cache), case in cases.items():  # each run's own estimate, stored before it
        name = f"{api}_cache_{'on' if cache else 'off'}"
        assert case["estimate"]["requests"] == case["estimate"]["estimated_requests"]
        assert report["estimate"][f"{name}_input_tokens"] > 0
    assert "cache-read share" in result.stdout


def test_bench_cost_refuses_an_unknown_api_in_one_line(tmp_path):
    result = rapport("bench", "cost", "--out", str(tmp_path), "--api", "gemini")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --api: unknown gemini (openai or anthropic)"
    assert not (tmp_path / "cost.json").exists()
