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
        assert off["input_tokens"] == on["input_tokens"]  # the same plan, the same prompts
        assert off["cache_read_tokens"] == off["cache_write_tokens"] == 0
    openai_on = cases[("openai", True)]
    assert openai_on["cache_read_tokens"] > 0
    savings = {saving["api"]: saving for saving in report["savings"]}
    assert 0 < savings["openai"]["input_cost_ratio"] < 1
    assert savings["openai"]["cache_read_share"] == pytest.approx(
        openai_on["cache_read_tokens"] / openai_on["input_tokens"]
    )
    assert report["judge"] is None and report["estimate"] is None  # hooks not filled yet
    assert "cache-read share" in result.stdout
