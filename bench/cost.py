"""`rapport bench cost`: what prompt caching saves on a multi-turn corpus, measured rather than
assumed. The same plan runs through each API's fake provider (OpenAI chat completions,
Anthropic messages) with caching off and on, in one run; the provider's own usage fields (its
caching emulation, fakes/prompt_cache.py) give the input tokens, cache reads and cache
writes, priced with the shipped list prices. "Off" is the run config's `cache: false` against a
provider that caches nothing (OpenAI would cache automatically anyway, so off is the bill
without any discount); "on" is `cache: true` against the emulation.

Figures per API: the cache-read share of input tokens with caching on, and the input cost with
caching on over off; each run's own estimate (what `generate --estimate` prints, stored before
its first call) against what it used; and the judge cost of the cache-on corpus, judged live
and with `rapport judge --batch` (batch prices).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from rapport.config.prices import PriceTable, load_prices
from rapport.fakes.provider import (
    FakeProviderSettings,
    FakeProviderState,
    running_fake_provider,
)
from rapport.stages.generate import GenerateRequest, generate
from rapport.store.cost_reads import (
    EstimateVsActual,
    JudgeUsage,
    StoredUsage,
    estimate_vs_actual,
    judge_usage,
    stored_usage,
)

Api = Literal["openai", "anthropic"]
BENCH_KEY_ENV = "RAPPORT_BENCH_KEY"
JUDGE_KEYS = {"OPENAI_API_KEY": "sk-bench-judge", "ANTHROPIC_API_KEY": "sk-ant-bench-judge"}
# every judge reply a valid per-criterion verdict
VERDICT = json.dumps({"reasoning": "The assistant answers what the user raised.", "answer": "YES"})
JUDGE_TIMEOUT_S = 1800.0
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
    # conversations played first, so the main run's estimate has reply lengths measured in
    # the corpus (as a user estimates after a pilot); 0: the estimate from limits alone
    pilot: int = 5
    judge: bool = True  # judge each API's cache-on corpus live and with --batch
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
    stored: StoredUsage  # the same run as Rapport parsed, priced and stored it
    estimate: EstimateVsActual | None = None  # the run's own estimate, made before it started


class ApiSaving(msgspec.Struct, frozen=True):
    api: Api
    cache_read_share: float  # with caching on
    input_cost_ratio: float  # input cost on / off
    input_cost_off_usd: float
    input_cost_on_usd: float


class JudgeCost(msgspec.Struct, frozen=True):
    """The cache-on corpus of one API judged live and through its batch API."""

    api: Api
    model: str
    live: JudgeUsage
    batch: JudgeUsage
    batches: int  # batches the provider received
    batch_over_live: float | None  # cost ratio


class CostReport(msgspec.Struct, frozen=True):
    settings: CostSettings
    cases: tuple[CaseCost, ...]
    savings: tuple[ApiSaving, ...]
    targets: dict[str, float]
    judges: tuple[JudgeCost, ...] = ()
    estimate: dict[str, float] | None = None  # estimated / actual, per case and figure


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
    api: Api,
    model: str,
    cache: bool,
    state: FakeProviderState,
    prices: PriceTable,
    db: Path,
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
        stored=stored_usage(db),
        estimate=estimate_vs_actual(db),
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
        pilot = min(settings.pilot, settings.conversations - 1)
        if pilot > 0:
            pilot_request = msgspec.structs.replace(request, count=pilot)
            generate(pilot_request, environ={BENCH_KEY_ENV: "bench-key"})
        generate(request, environ={BENCH_KEY_ENV: "bench-key"})
    return _case_cost(api, model, cache, state, prices, request.db)


def _judge(db: Path, spec: str, *more: str) -> None:
    env = {**os.environ, **JUDGE_KEYS, "RAPPORT_BATCH_POLL_S": "0.1"}
    argv = [sys.executable, "-m", "rapport", "judge", "--db", str(db), "--judge", spec, "--quiet"]
    result = subprocess.run(
        [*argv, *more], env=env, capture_output=True, text=True, timeout=JUDGE_TIMEOUT_S
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        raise RuntimeError(f"rapport judge {' '.join(more)} failed: {lines[-1]}")


def judge_costs(api: Api, settings: CostSettings, corpus: Path, workdir: Path) -> JudgeCost:
    """Judge a copy of the corpus live and another with `--batch` (`rapport judge`, a
    subprocess) against a fake provider whose every reply is a valid verdict."""
    model = settings.openai_model if api == "openai" else settings.anthropic_model
    live_db, batch_db = workdir / f"{api}-judge-live.duckdb", workdir / f"{api}-judge-batch.duckdb"
    shutil.copy(corpus, live_db)
    shutil.copy(corpus, batch_db)
    provider = FakeProviderSettings(replies=(VERDICT,), batch_delay_s=0.2, seed=settings.seed)
    with running_fake_provider(provider) as (base_url, state):
        root = base_url.removesuffix("/v1") if api == "anthropic" else base_url
        spec = f"{api}:{model}@{root}"
        _judge(live_db, spec)
        _judge(batch_db, spec, "--batch")
    live, batch = judge_usage(live_db), judge_usage(batch_db)
    ratio = None
    if live.cost_usd and batch.cost_usd is not None:
        ratio = batch.cost_usd / live.cost_usd
    return JudgeCost(api, model, live, batch, state.batches_created, ratio)


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


def estimate_accuracy(cases: tuple[CaseCost, ...]) -> dict[str, float] | None:
    """Estimated over actual, per case: requests, input and output tokens, cost. Each generate
    run stores the estimate `generate --estimate` prints, made before its first call."""
    ratios: dict[str, float] = {}
    for case in cases:
        check = case.estimate
        if check is None:
            continue
        name = f"{case.api}_cache_{'on' if case.cache else 'off'}"
        pairs = {
            "requests": (check.estimated_requests, check.requests),
            "input_tokens": (check.estimated_input_tokens, check.input_tokens),
            "output_tokens": (check.estimated_output_tokens, check.output_tokens),
            "cost": (check.estimated_cost_usd, check.cost_usd),
        }
        for figure, (estimated, actual) in pairs.items():
            if estimated is not None and actual:
                ratios[f"{name}_{figure}"] = estimated / actual
    return ratios or None


def run_cost(
    settings: CostSettings,
    out: Path,
    log: Callable[[str], None] = print,
    apis: tuple[Api, ...] = ("openai", "anthropic"),
) -> CostReport:
    """Every case, then `cost.json` under `out`."""
    prices = load_prices()
    cases: list[CaseCost] = []
    judges: list[JudgeCost] = []
    with tempfile.TemporaryDirectory(prefix="rapport-bench-cost-") as scratch:
        workdir = Path(scratch)
        for api in apis:
            for cache in (False, True):
                log(f"{api}, caching {'on' if cache else 'off'}")
                cases.append(run_case(api, cache, settings, workdir, prices))
            if settings.judge:
                log(f"{api}: judging the cache-on corpus live and with --batch")
                corpus = workdir / f"{api}-cache-on.duckdb"
                judges.append(judge_costs(api, settings, corpus, workdir))
    report = CostReport(
        settings=settings,
        cases=tuple(cases),
        savings=savings(tuple(cases)),
        targets=TARGETS,
        judges=tuple(judges),
        estimate=estimate_accuracy(tuple(cases)),
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
    for judge in report.judges:
        live, batch, ratio = judge.live.cost_usd, judge.batch.cost_usd, judge.batch_over_live
        measured = "no known price"
        if live is not None and batch is not None and ratio is not None:
            calls = judge.live.requests
            measured = f"${batch:.4f} / ${live:.4f} = {ratio:.2f} ({calls:,} calls)"
        rows.append((f"{judge.api}: judge cost batch / live", measured, ""))
    estimate = report.estimate or {}
    for case in report.cases:
        name = f"{case.api}_cache_{'on' if case.cache else 'off'}"
        parts = [
            f"{figure.replace('_tokens', '')} {estimate[f'{name}_{figure}']:.2f}"
            for figure in ("input_tokens", "output_tokens", "cost")
            if f"{name}_{figure}" in estimate
        ]
        if parts:
            label = f"estimate / actual: {case.api}, caching {'on' if case.cache else 'off'}"
            rows.append((label, " · ".join(parts), "±15 %"))
    return rows
