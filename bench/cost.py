"""`rapport bench cost`: what prompt caching saves on a multi-turn corpus, measured rather than
assumed. The same plan runs through each API's fake provider (OpenAI chat completions,
Anthropic messages) with caching off and on, in one run; the provider's own usage fields (its
caching emulation, bench/fake_prompt_cache.py) give the input tokens, cache reads and cache
writes, priced with the shipped list prices. "Off" is the run config's `cache: false` against a
provider that caches nothing (OpenAI would cache automatically anyway, so off is the bill
without any discount); "on" is `cache: true` against the emulation.

Figures per API: the cache-read share of input tokens with caching on, and the input cost with
caching on over off. Judge cost live vs batch and estimate vs actual tokens are hooks left for
the batch judge and `generate --estimate` (see `judge_costs` and `estimate_accuracy`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from rapport.bench.fake_provider import (
    FakeProviderSettings,
    FakeProviderState,
    running_fake_provider,
)
from rapport.config.prices import PriceTable, load_prices
from rapport.stages.generate import GenerateRequest, generate

Api = Literal["openai", "anthropic"]
BENCH_KEY_ENV = "RAPPORT_BENCH_KEY"
TARGETS = {
    "cache_read_share": 0.80,  # of input tokens, conversations of >= 10 exchanges
    "anthropic_input_cost_ratio": 0.35,  # caching on / off, at Anthropic's cache prices
}


class CostSettings(msgspec.Struct, frozen=True):
    """The benchmark's plan; the defaults are the run behind the README's figures."""

    conversations: int = 50
    exchanges: int = 20
    max_active: int = 50
    reply_tokens: int = 60  # the fake's reply length (before the role's max_tokens)
    seed: int = 0
    openai_model: str = "gpt-4o-mini"
    anthropic_model: str = "claude-sonnet-4-5"
    domain: Path | None = None  # the shipped default domain when None


class CaseCost(msgspec.Struct, frozen=True):
    """One API with caching off or on, as the provider counted it."""

    api: Api
    model: str
    cache: bool
    requests: int
    input_tokens: int  # every input token: uncached + cache writes + cache reads
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cache_read_share: float
    input_cost_usd: float
    output_cost_usd: float


class ApiSaving(msgspec.Struct, frozen=True):
    api: Api
    cache_read_share: float  # with caching on
    input_cost_ratio: float  # input cost on / off
    input_cost_off_usd: float
    input_cost_on_usd: float


class CostReport(msgspec.Struct, frozen=True):
    settings: CostSettings
    cases: tuple[CaseCost, ...]
    savings: tuple[ApiSaving, ...]
    targets: dict[str, float]
    judge: dict[str, float] | None = None  # TODO(batch judge): live vs batch judge cost
    estimate: dict[str, float] | None = None  # TODO(--estimate): estimate vs actual tokens


def _role(api: Api, model: str, base_url: str, max_tokens: int) -> dict[str, object]:
    root = base_url.removesuffix("/v1") if api == "anthropic" else base_url
    return {
        "provider": api,
        "model": model,
        "base_url": root,
        "api_key_env": BENCH_KEY_ENV,
        "max_tokens": max_tokens,
        "max_retries": 4,
        "timeout_s": 60,
    }


def _run_config(path: Path, role: dict[str, object], settings: CostSettings, cache: bool) -> Path:
    config = {
        "backends": {"user_sim": role, "assistant": role},
        "cache": cache,
        "max_active": settings.max_active,
        "seed": settings.seed,
    }
    path.write_bytes(msgspec.json.encode(config))  # JSON is YAML
    return path


def _case_cost(
    api: Api, model: str, cache: bool, state: FakeProviderState, prices: PriceTable
) -> CaseCost:
    price = prices.price_for(model)
    if price is None:
        raise ValueError(f"no price for {model} in config/prices.yaml")
    input_cost = prices.cost(
        model,
        state.prompt_tokens,
        0,
        cache_read_tokens=state.cache_read_tokens,
        cache_write_tokens=state.cache_write_tokens,
    )
    output_cost = prices.cost(model, 0, state.completion_tokens)
    return CaseCost(
        api=api,
        model=model,
        cache=cache,
        requests=state.completed,
        input_tokens=state.prompt_tokens,
        cache_read_tokens=state.cache_read_tokens,
        cache_write_tokens=state.cache_write_tokens,
        output_tokens=state.completion_tokens,
        cache_read_share=state.cache_read_tokens / max(1, state.prompt_tokens),
        input_cost_usd=input_cost or 0.0,
        output_cost_usd=output_cost or 0.0,
    )


def run_case(
    api: Api, cache: bool, settings: CostSettings, workdir: Path, prices: PriceTable
) -> CaseCost:
    """The plan through one API's fake (a fresh provider, so a fresh cache)."""
    model = settings.openai_model if api == "openai" else settings.anthropic_model
    name = f"{api}-cache-{'on' if cache else 'off'}"
    # Off is the bill without any cache discount: OpenAI caches on its own, whatever the run
    # config says, so the provider's emulation is off too.
    provider = FakeProviderSettings(
        reply_tokens=settings.reply_tokens, seed=settings.seed, prompt_cache=cache
    )
    with running_fake_provider(provider) as (base_url, state):
        role = _role(api, model, base_url, max(settings.reply_tokens * 2, 256))
        request = GenerateRequest(
            db=workdir / f"{name}.duckdb",
            count=settings.conversations,
            config=_run_config(workdir / f"{name}.yaml", role, settings, cache),
            turns=settings.exchanges,
            domain=settings.domain,
        )
        generate(request, environ={BENCH_KEY_ENV: "bench-key"})
    return _case_cost(api, model, cache, state, prices)


def savings(cases: tuple[CaseCost, ...]) -> tuple[ApiSaving, ...]:
    result: list[ApiSaving] = []
    for api in ("openai", "anthropic"):
        off = next((c for c in cases if c.api == api and not c.cache), None)
        on = next((c for c in cases if c.api == api and c.cache), None)
        if off is None or on is None:
            continue
        result.append(
            ApiSaving(
                api=api,
                cache_read_share=on.cache_read_share,
                input_cost_ratio=on.input_cost_usd / off.input_cost_usd
                if off.input_cost_usd
                else 0.0,
                input_cost_off_usd=off.input_cost_usd,
                input_cost_on_usd=on.input_cost_usd,
            )
        )
    return tuple(result)


def judge_costs(settings: CostSettings, workdir: Path) -> dict[str, float] | None:
    """TODO(batch judge, i15-batch): judge the cache-on corpus live and with `--batch` against
    the fake and report both costs (batch at the batch prices). None until that lands."""
    return None


def estimate_accuracy(settings: CostSettings, workdir: Path) -> dict[str, float] | None:
    """TODO(--estimate, i15-budget): `generate --estimate` for the same plan against the
    tokens counted here (target within ±15 %). None until that lands."""
    return None


def run_cost(
    settings: CostSettings,
    out: Path,
    log: Callable[[str], None] = print,
    apis: tuple[Api, ...] = ("openai", "anthropic"),
) -> CostReport:
    """Every case, then `cost.json` under `out`."""
    prices = load_prices()
    cases: list[CaseCost] = []
    with tempfile.TemporaryDirectory(prefix="rapport-bench-cost-") as scratch:
        workdir = Path(scratch)
        for api in apis:
            for cache in (False, True):
                log(f"{api}, caching {'on' if cache else 'off'}")
                cases.append(run_case(api, cache, settings, workdir, prices))
        judge = judge_costs(settings, workdir)
        estimate = estimate_accuracy(settings, workdir)
    report = CostReport(
        settings=settings,
        cases=tuple(cases),
        savings=savings(tuple(cases)),
        targets=TARGETS,
        judge=judge,
        estimate=estimate,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    return report


def summary_rows(report: CostReport) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    share_target = f"≥ {TARGETS['cache_read_share']:.0%}"
    for saving in report.savings:
        rows.append(
            (
                f"{saving.api}: cache-read share of input",
                f"{saving.cache_read_share:.1%}",
                share_target,
            )
        )
        target = f"≤ {TARGETS['anthropic_input_cost_ratio']}" if saving.api == "anthropic" else ""
        rows.append(
            (
                f"{saving.api}: input cost on / off",
                f"${saving.input_cost_on_usd:.4f} / ${saving.input_cost_off_usd:.4f} = "
                f"{saving.input_cost_ratio:.2f}",
                target,
            )
        )
    rows.append(("judge cost live vs batch", "TODO (batch judge)", ""))
    rows.append(("estimate vs actual tokens", "TODO (generate --estimate)", "±15 %"))
    return rows
