"""--max-cost / budget_usd against the fake provider over real HTTP: the run stops cleanly
before the spend could pass the budget, nothing said is lost or failed, and the same command
with a higher budget continues it."""

from __future__ import annotations

from pathlib import Path

import anyio
import duckdb
import pytest

from rapport.config.prices import usage_cost
from rapport.config.run import Price
from rapport.engine.budget import BudgetReached, SpendGuard, SpendMeter
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.generate import GenerateRequest, generate
from tests.conftest import error_lines, rapport_in_process

KEY_ENV = "RAPPORT_BUDGET_KEY"
# $1,000 per million tokens: a prompt of ~1,300 tokens costs about $1.30, so a tiny run meets a
# budget of a few dollars.
PRICE = Price(input=1000.0, output=1000.0)
COUNT, TURNS = 4, 3


def _config(path: Path, base_url: str, budget: float | None = None) -> Path:
    role = (
        f"{{provider: openai, model: gpt-4o-mini, base_url: '{base_url}', "
        f"api_key_env: {KEY_ENV}, max_tokens: 40, rpm: 60000}}"
    )
    text = (
        f"backends:\n  user_sim: {role}\n  assistant: {role}\n"
        f"prices:\n  gpt-4o-mini: {{input: {PRICE.input}, output: {PRICE.output}}}\n"
    )
    if budget is not None:
        text += f"budget_usd: {budget}\n"
    path.write_text(text)
    return path


def _run(db: Path, config: Path, max_cost: float | None, max_active: int = 2):
    request = GenerateRequest(
        db=db, count=COUNT, turns=TURNS, max_active=max_active, config=config, max_cost=max_cost
    )
    return generate(request, environ={KEY_ENV: "sk-budget"})


def _stored_cost(db: Path) -> float:
    """What the stored messages cost at PRICE: every reply the provider was paid for."""
    with duckdb.connect(str(db), read_only=True) as conn:
        prompt, completion = conn.execute(
            "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
            "FROM messages"
        ).fetchone()
    return usage_cost(PRICE, int(prompt), int(completion))


def _check_intact(db: Path) -> dict[str, int]:
    """No conversation failed, turns contiguous from 0; returns conversations by status."""
    with duckdb.connect(str(db), read_only=True) as conn:
        gaps = conn.execute(
            "SELECT count(*) FROM (SELECT conversation_id, max(turn_index) + 1 - count(*) AS gap "
            "FROM messages GROUP BY 1) WHERE gap <> 0"
        ).fetchone()
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
        )
    assert gaps == (0,)
    assert "failed" not in statuses and "running" not in statuses
    return statuses


def test_the_budget_stops_the_run_with_every_paid_reply_stored_and_none_failed(tmp_path):
    db = tmp_path / "corpus.duckdb"
    fake = running_fake_provider(FakeProviderSettings(reply_tokens=20))
    with fake as (url, state), pytest.raises(BudgetReached) as stop:
        _run(db, _config(tmp_path / "run.yaml", url), max_cost=8.0)
    assert 0 < state.completed < COUNT * TURNS * 2
    with duckdb.connect(str(db), read_only=True) as conn:
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        run_status = conn.execute("SELECT status FROM runs").fetchone()[0]
    assert stored == state.completed  # every reply paid for is stored: calls in flight finished
    statuses = _check_intact(db)
    assert statuses.get("interrupted", 0) >= 1  # resumable, as after Ctrl-C
    assert run_status == "interrupted"
    assert _stored_cost(db) <= 8.0
    assert stop.value.spent_usd == pytest.approx(_stored_cost(db))
    assert "budget of $8.00 reached" in str(stop.value)


def test_a_higher_budget_continues_the_run_without_paying_twice(tmp_path):
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, state):
        config = _config(tmp_path / "run.yaml", url)
        with pytest.raises(BudgetReached):
            _run(db, config, max_cost=8.0)
        summary = _run(db, config, max_cost=1000.0)
    assert summary.complete == COUNT and summary.failed == 0
    assert _check_intact(db) == {"complete": COUNT}
    with duckdb.connect(str(db), read_only=True) as conn:
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert stored == COUNT * TURNS * 2 == state.completed  # no reply asked for twice


def test_the_same_budget_again_spends_nothing_more_than_the_budget(tmp_path):
    """--max-cost is the total for the plan's corpus across runs: earlier runs' spend counts."""
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, _):
        config = _config(tmp_path / "run.yaml", url)
        for _ in range(3):
            with pytest.raises(BudgetReached):
                _run(db, config, max_cost=8.0)
    assert _stored_cost(db) <= 8.0
    _check_intact(db)
    with duckdb.connect(str(db), read_only=True) as conn:
        spent = conn.execute("SELECT sum(cost_usd) FROM gateway_stats").fetchone()[0]
    assert spent == pytest.approx(_stored_cost(db)) and spent <= 8.0


def test_calls_in_flight_never_let_the_spend_pass_the_budget(tmp_path):
    """Many conversations at once, each call slow: what calls in flight reserved keeps the
    rest out, so the spend stays under the budget however many were in flight."""
    db = tmp_path / "corpus.duckdb"
    slow = FakeProviderSettings(reply_tokens=20, latency_ms=50.0)
    with running_fake_provider(slow) as (url, state), pytest.raises(BudgetReached):
        _run(db, _config(tmp_path / "run.yaml", url), max_cost=12.0, max_active=COUNT)
    assert state.completed >= 2
    assert _stored_cost(db) <= 12.0
    _check_intact(db)


def test_budget_usd_in_the_run_config_is_the_budget_and_the_flag_overrides_it(tmp_path):
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, _):
        config = _config(tmp_path / "run.yaml", url, budget=8.0)
        with pytest.raises(BudgetReached) as stop:
            _run(db, config, max_cost=None)
        assert stop.value.budget_usd == 8.0
        assert _run(db, config, max_cost=1000.0).complete == COUNT


def test_the_command_line_prints_one_line_and_exits_5(tmp_path):
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, _):
        config = _config(tmp_path / "run.yaml", url)
        args = ["generate", "--db", str(db), "--count", str(COUNT), "--turns", str(TURNS)]
        args += ["--config", str(config), "--quiet"]
        env = {KEY_ENV: "sk-budget"}
        stopped = rapport_in_process(*args, "--max-cost", "8", env=env)
        resumed = rapport_in_process(*args, "--max-cost", "1000", env=env)
    assert stopped.returncode == 5
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("budget of $8.00 reached: $")
    assert lines[0].endswith("run again with a higher --max-cost to continue")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{COUNT}/{COUNT} complete" in resumed.stdout


def test_a_model_with_no_known_price_refuses_the_budget_before_the_database_exists(tmp_path):
    db = tmp_path / "corpus.duckdb"
    args = ["generate", "--db", str(db), "--count", "2", "--max-cost", "5"]
    result = rapport_in_process(
        *args, "--backend", "openai:no-such-model@http://127.0.0.1:9/v1", env={KEY_ENV: "x"}
    )
    assert result.returncode == 2
    [line] = error_lines(result)
    assert "--max-cost needs the price of every model" in line and "no-such-model" in line
    assert not db.exists()


def test_simulated_backends_are_free_under_a_budget(tmp_path):
    db = tmp_path / "corpus.duckdb"
    summary = generate(GenerateRequest(db=db, count=3, turns=2, backend="simulated", max_cost=0.01))
    assert summary.complete == 3


def _completion(prompt: int, completion: int) -> Completion:
    return Completion(
        text="x", prompt_tokens=prompt, completion_tokens=completion, latency_s=0.0,
        model="m", provider="openai", finish_reason="stop",
    )  # fmt: skip


def test_a_call_is_refused_when_its_worst_case_would_pass_what_is_left():
    guard = SpendGuard(1.0, spent_before_usd=0.25)
    meter = SpendMeter(guard, Price(input=1000.0, output=1000.0))
    messages = [ChatMessage("user", "x" * 400)]  # worst case: 200 + 8 prompt tokens at first
    params = CompletionParams(max_tokens=100, temperature=0.0)
    first = meter.reserve(messages, params)
    assert first.usd == pytest.approx(0.308)
    second = meter.reserve(messages, params)  # 0.25 + 0.308 * 2 = 0.866 <= 1.0
    with pytest.raises(BudgetReached):
        meter.reserve(messages, params)  # 0.866 + 0.308 > 1.0
    assert guard.reached
    meter.settle(first, _completion(100, 10))
    meter.settle(second, None)  # a failed call costs nothing
    assert guard.reserved_usd == pytest.approx(0.0)
    assert guard.total_spent_usd == pytest.approx(0.25 + 0.11)
    with pytest.raises(BudgetReached):  # once refused, every later call is refused
        meter.reserve([ChatMessage("user", "x")], CompletionParams(max_tokens=1, temperature=0.0))


def test_the_worst_case_follows_the_most_tokens_per_character_reported():
    meter = SpendMeter(SpendGuard(100.0), Price(input=1.0, output=1.0))
    reservation = meter.reserve(
        [ChatMessage("user", "x" * 1000)], CompletionParams(max_tokens=1, temperature=0.0)
    )
    assert meter.worst_prompt_tokens(1000, 1) == 508  # 2 characters per token, before any usage
    meter.settle(reservation, _completion(250, 1))  # the provider: 4 characters per token
    assert meter.worst_prompt_tokens(1000, 1) == 321  # 250 x 1.25 + 8


def test_an_eval_stops_at_its_budget_and_a_higher_one_finishes_it(tmp_path):
    """`rapport eval --max-cost`: the sides' calls are held to it, nothing played is failed,
    and the same eval with a higher budget completes and is judged."""
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, state):
        config = _config(tmp_path / "run.yaml", url)
        side = f"openai:gpt-4o-mini@{url}?max_tokens=40"
        args = ["eval", "--db", str(db), "--scenarios", "3", "--turns", "2", "--baseline", side]
        args += ["--candidate", f"{side}&temperature=0.2", "--user-backend", "simulated"]
        args += ["--judges", "simulated", "--config", str(config), "--quiet"]
        args += ["--out", str(tmp_path / "report")]
        env = {KEY_ENV: "sk-budget", "OPENAI_API_KEY": "sk-budget"}
        stopped = rapport_in_process(*args, "--max-cost", "6", env=env)
        made = state.completed
        finished = rapport_in_process(*args, "--max-cost", "1000", "--overwrite", env=env)
    assert stopped.returncode == 5, stopped.stderr
    assert "budget of $6.00 reached" in stopped.stderr
    assert 0 < made < 3 * 2 * 2  # the sides' replies: 3 scenarios x 2 sides x 2 exchanges
    assert finished.returncode == 0, finished.stderr
    _check_intact(db)
    with duckdb.connect(str(db), read_only=True) as conn:
        spent = conn.execute(
            "SELECT sum(cost_usd) FROM gateway_stats JOIN runs USING (run_id) "
            "WHERE command = 'eval'"
        ).fetchone()[0]
    assert spent == pytest.approx(usage_cost(PRICE, state.prompt_tokens, state.completion_tokens))


class _CutReplies:
    """A priced backend whose every reply is cut at max_tokens (finish reason `length`)."""

    provider, model = "openai", "gpt-4o-mini"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, messages, params) -> Completion:
        self.calls += 1
        prompt = sum(len(m.content) for m in messages) // 4
        return Completion(
            text="a reply cut short", prompt_tokens=prompt, completion_tokens=params.max_tokens,
            latency_s=0.0, model=self.model, provider=self.provider, finish_reason="length",
        )  # fmt: skip

    async def aclose(self) -> None:
        return None


def test_a_cut_reply_is_kept_when_the_budget_refuses_its_longer_retry(tiny):
    from rapport.agents.actors import Assistant
    from rapport.config.backend_settings import OpenAIConfig
    from rapport.engine.gateway import Gateway
    from rapport.engine.plan import sample_scenario

    backend = _CutReplies()
    gateway = Gateway(backend)
    guard = SpendGuard(0.5)
    gateway.spend = SpendMeter(guard, PRICE)
    actor = Assistant(
        domain=tiny, scenario=sample_scenario(tiny, "plan", 0, 0), run_id="run",
        gateway=gateway, settings=OpenAIConfig(model="gpt-4o-mini", max_tokens=100),
        sink=None, history=[], on_turn=lambda _: None,  # type: ignore[arg-type]
    )  # fmt: skip
    # max_tokens is set, so the words a turn may use do not change its budget
    completion = anyio.run(actor.speak, [ChatMessage("user", "x" * 400)], 1, False, 60)
    assert completion.truncated and completion.completion_tokens == 100
    assert backend.calls == 1 and guard.reached  # the retry with 200 tokens did not fit
    assert guard.total_spent_usd == pytest.approx(0.2) and guard.reserved_usd == 0.0


def test_the_live_display_shows_what_the_budget_has_left():
    from rich.console import Console

    from rapport._live_table import progress_table
    from rapport.config.prices import PriceTable
    from rapport.engine.gateway import Gateway
    from rapport.engine.progress import RunProgress

    gateway = Gateway(_CutReplies())
    guard = SpendGuard(5.0, spent_before_usd=1.25)
    gateway.spend = SpendMeter(guard, PRICE)
    console = Console(width=200, record=True)
    console.print(progress_table(RunProgress(total=4), {"assistant": gateway}, PriceTable({})))
    shown = console.export_text()
    assert "$1.2500 of $5.00 spent ($1.2500 by earlier runs)" in shown
    guard.reached = True
    console.print(progress_table(RunProgress(total=4), {"assistant": gateway}, PriceTable({})))
    assert "reached: finishing the calls in flight" in console.export_text()


def test_a_run_killed_before_its_counters_were_stored_still_counts_its_stored_replies(tmp_path):
    """kill -9 can lose a run's last gateway counters, never its stored messages: what they
    cost counts against the budget of the next run."""
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, _):
        config = _config(tmp_path / "run.yaml", url)
        with pytest.raises(BudgetReached):
            _run(db, config, max_cost=8.0)
        with duckdb.connect(str(db)) as conn:
            conn.execute("DELETE FROM gateway_stats")  # as if killed before they were written
        with pytest.raises(BudgetReached):
            _run(db, config, max_cost=8.0)
    assert _stored_cost(db) <= 8.0
    _check_intact(db)
