"""The public Python API as a script uses it: `rapport.open` on a real DuckDB file, the stages on
the simulated backend, SQL into pandas, conversations with their turns and verdicts, a dataset in
memory, the same calls inside and on a running event loop, and errors whose message is the line
the command line prints."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import threading
import urllib.request
from pathlib import Path

import duckdb
import pytest

import rapport
from rapport.cli.exit_codes import INPUT_ERROR
from tests.conftest import error_lines, rapport_in_process
from tests.conftest import rapport as rapport_cli

SIM = {"backend": "simulated", "turns": 2, "seed": 1, "progress": False}


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> rapport.Corpus:
    """A corpus of six simulated conversations, judged by the simulated judge."""
    corpus = rapport.open(tmp_path_factory.mktemp("api") / "judged.duckdb")
    corpus.generate(count=6, **SIM)
    corpus.judge(judges=["simulated"], progress=False)
    return corpus


def test_open_creates_a_rapport_database(tmp_path):
    path = tmp_path / "new.duckdb"
    corpus = rapport.open(str(path))
    assert isinstance(corpus, rapport.Corpus)
    assert path.is_file()
    assert corpus.sql("SELECT count(*) FROM conversations").fetchall() == [(0,)]


def test_open_refuses_a_foreign_duckdb_file(tmp_path):
    path = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(rapport.RapportError) as refused:
        rapport.open(path)
    assert "\n" not in str(refused.value)
    with duckdb.connect(str(path), read_only=True) as conn:  # left as it was
        tables = conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
    assert tables == [("invoices",)]


def test_open_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database\n" * 100)
    with pytest.raises(rapport.BadInput):
        rapport.open(path)


def test_generate_returns_the_run_summary(tmp_path):
    corpus = rapport.open(tmp_path / "gen.duckdb")
    run = corpus.generate(count=3, **SIM)
    assert isinstance(run, rapport.RunSummary)
    assert (run.count, run.complete, run.failed, run.pending) == (3, 3, 0, 0)
    again = corpus.generate(count=3, **SIM)  # resumes: nothing left to play
    assert again.plan_id == run.plan_id and again.turns_written == 0


def test_judge_returns_the_judge_summary(judged):
    summary = judged.judge(judges=["simulated"], progress=False)  # nothing left to judge
    assert isinstance(summary, rapport.JudgeSummary)
    assert summary.judged == 0
    assert judged.sql("SELECT count(*) FROM conversation_judgement").fetchall() == [(6,)]


def test_sql_gives_a_relation_for_pandas_and_arrow(judged):
    relation = judged.sql("SELECT role, count(*) AS n FROM messages GROUP BY 1 ORDER BY 1")
    frame = relation.df()
    assert list(frame["role"]) == ["assistant", "user"]
    assert int(frame["n"].sum()) == judged.sql("SELECT count(*) FROM messages").fetchall()[0][0]
    assert relation.arrow().read_all().num_rows == 2


def test_sql_leaves_the_file_free_for_a_run(judged, tmp_path):
    relation = judged.sql("SELECT conversation_id FROM conversations")
    run = judged.generate(count=7, **SIM)  # writes while the relation is still in use
    assert run.complete == 7
    assert len(relation.fetchall()) == 6


def test_sql_refuses_a_write_with_the_cli_line(judged):
    with pytest.raises(rapport.StoreError) as refused:
        judged.sql("DELETE FROM messages")
    cli = rapport_cli("sql", "--db", str(judged.path), "DELETE FROM messages")
    assert cli.returncode == INPUT_ERROR
    assert error_lines(cli) == [f"error: {refused.value}"]


def test_conversations_carry_turns_and_verdicts(judged):
    listed = list(judged.conversations(status="complete", limit=4))
    assert len(listed) == 4
    assert [c.summary.conversation_id for c in listed] == sorted(
        c.summary.conversation_id for c in listed
    )
    for conversation in listed:
        assert [t.role for t in conversation.turns][:2] == ["user", "assistant"]
        assert conversation.verdicts
        assert {v.conversation_id for v in conversation.verdicts} == {
            conversation.summary.conversation_id
        }


def test_conversations_filter_on_passed(judged):
    passed = {c.summary.conversation_id for c in judged.conversations(passed=True)}
    failed = {c.summary.conversation_id for c in judged.conversations(passed=False)}
    stored = judged.sql("SELECT conversation_id, passed FROM conversation_judgement").fetchall()
    assert passed == {cid for cid, ok in stored if ok}
    assert failed == {cid for cid, ok in stored if not ok}


def test_conversations_read_past_one_page(judged, monkeypatch):
    monkeypatch.setattr("rapport.corpus.CONVERSATION_PAGE", 2)
    ids = [c.summary.conversation_id for c in judged.conversations()]
    stored = judged.sql("SELECT conversation_id FROM corpus_conversations ORDER BY 1").fetchall()
    assert ids == [cid for (cid,) in stored]
    assert len(ids) > 2


def test_dataset_is_built_in_memory_and_writes_nothing(judged, tmp_path):
    datasets = pytest.importorskip("datasets")
    before = judged.sql(
        "SELECT (SELECT count(*) FROM examples) + (SELECT count(*) FROM dataset_exclusions)"
    ).fetchall()
    ds = judged.dataset(min_score=0.0)
    assert isinstance(ds, datasets.DatasetDict)
    rows = sum(split.num_rows for split in ds.values())
    assert rows > 0
    first = next(iter(ds.values()))[0]
    assert first["messages"][0]["role"] == "system"
    assert (
        judged.sql(
            "SELECT (SELECT count(*) FROM examples) + (SELECT count(*) FROM dataset_exclusions)"
        ).fetchall()
        == before
    )


def test_stats_gives_the_figures_rapport_stats_prints(judged):
    sections = judged.stats()
    titles = [section.title for section in sections]
    assert titles[0] == "Conversations by status"
    assert "Pass rate (across judges, by the pass rule)" in titles  # judged: the judging figures
    by_status = dict(sections[0].result.rows)
    stored = judged.sql("SELECT status, count(*) FROM corpus_conversations GROUP BY 1").fetchall()
    assert by_status == dict(stored)
    printed = rapport_in_process("stats", "--db", str(judged.path))
    assert printed.returncode == 0
    shown = " ".join(printed.stdout.split())  # a title wider than its table wraps
    assert [title for title in titles if title in shown] == titles


def test_review_sample_draws_the_queue_rapport_review_sample_draws(judged, tmp_path):
    copy = tmp_path / "queued.duckdb"
    shutil.copy(judged.path, copy)
    corpus = rapport.open(copy)
    summary = corpus.review_sample(4, strategy="borderline", queue="edge", reviewer="ann")
    assert (summary.queue, summary.strategy, summary.queued) == ("edge", "borderline", 4)
    queued = corpus.sql(
        "SELECT queue, strategy, reviewer, count(*) FROM review_queue GROUP BY ALL"
    ).fetchall()
    assert queued == [("edge", "borderline", "ann", 4)]
    with pytest.raises(rapport.BadInput) as refused:
        corpus.review_sample(4, strategy="loudest")
    printed = rapport_in_process(
        "review", "sample", "--db", str(copy), "--n", "4", "--strategy", "loudest"
    )
    assert printed.returncode == 2 and str(refused.value) in printed.stderr


def test_stats_with_repetition_gives_the_phrases_sections(judged):
    sections = judged.stats(repetition=True)
    assert sections and all(section.result.columns for section in sections)
    printed = rapport_in_process("stats", "--db", str(judged.path), "--repetition")
    assert printed.returncode == 0
    shown = " ".join(printed.stdout.split())
    assert all(section.title in shown for section in sections)
    assert not {s.title for s in sections} & {s.title for s in judged.stats()}


def test_report_writes_markdown_and_plots_and_keeps_a_users_folder(judged, tmp_path):
    path = judged.report(tmp_path / "report")
    assert path == tmp_path / "report" / "report.md"
    assert "# Rapport corpus report" in path.read_text()
    assert list((tmp_path / "report").glob("*.png"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(rapport.BadInput) as refused:
        judged.report(mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    cli = rapport_in_process("report", "--db", str(judged.path), "--out", str(mine))
    assert cli.returncode == INPUT_ERROR
    assert error_lines(cli) == [f"error: {refused.value}"]


def test_merge_joins_a_plans_shards_into_one_corpus(tmp_path):
    shards = []
    for index in range(2):
        shard = rapport.open(tmp_path / f"shard-{index}.duckdb")
        shard.generate(count=4, shard=f"{index}/2", **SIM)
        shards.append(shard.path)
    summary = rapport.merge([str(path) for path in shards], tmp_path / "merged.duckdb")
    assert summary.statuses == {"complete": 4}
    assert sum(shard.conversations_added for shard in summary.shards) == 4
    assert summary.missing == ()
    merged = rapport.open(tmp_path / "merged.duckdb")
    assert merged.sql("SELECT count(*) FROM conversations").fetchall() == [(4,)]
    again = rapport.merge(shards, merged.path)  # nothing new: nothing added
    assert sum(shard.conversations_added for shard in again.shards) == 0


def test_merge_refuses_shards_of_another_plan_with_the_cli_line(tmp_path):
    first = rapport.open(tmp_path / "a.duckdb")
    first.generate(count=2, shard="0/2", **SIM)
    other = rapport.open(tmp_path / "b.duckdb")
    other.generate(count=2, shard="1/2", **{**SIM, "seed": 2})
    out = tmp_path / "merged.duckdb"
    with pytest.raises(rapport.StoreError) as refused:
        rapport.merge([first.path, other.path], out)
    assert not out.exists()  # nothing written
    cli = rapport_in_process("merge", str(first.path), str(other.path), "--out", str(out))
    assert cli.returncode == INPUT_ERROR
    assert error_lines(cli) == [f"error: {refused.value}"]


def test_estimate_calls_no_model_and_writes_no_run(tmp_path):
    corpus = rapport.open(tmp_path / "est.duckdb")
    estimate = corpus.estimate(count=5, backend="simulated", turns=2)
    assert isinstance(estimate, rapport.Estimate)
    assert estimate.conversations == 5 and estimate.requests > 0
    assert corpus.sql("SELECT count(*) FROM runs").fetchall() == [(0,)]
    assert corpus.sql("SELECT count(*) FROM scenarios").fetchall() == [(0,)]


def test_evaluate_returns_the_paired_comparison(tmp_path):
    from tests.conftest import TINY_DOMAIN

    corpus = rapport.open(tmp_path / "eval.duckdb")
    weak, good = "simulated:quality=0.6", "simulated:quality=0.9"
    report = corpus.evaluate(
        scenarios=3, baseline=weak, candidate=good, judges=["simulated"],
        user_backend="simulated", domain=TINY_DOMAIN, turns=2, progress=False,
    )  # fmt: skip
    assert isinstance(report, rapport.EvalSummary)
    assert report.scenarios == 3 and len(report.sides) == 2
    again = asyncio.run(
        corpus.aevaluate(
            scenarios=3,
            baseline=weak,
            candidate=good,
            judges=["simulated"],
            user_backend="simulated",
            domain=str(TINY_DOMAIN),
            turns=2,
            progress=False,
        )
    )
    assert again.eval_id == report.eval_id  # resumed: the same eval, nothing played twice
    assert again.paired == report.paired


def test_an_error_message_is_the_cli_line(tmp_path):
    corpus = rapport.open(tmp_path / "bad.duckdb")
    with pytest.raises(rapport.BadInput) as refused:
        corpus.generate(count=2, backend="no-such-backend", progress=False)
    cli = rapport_cli(
        "generate", "--db", str(corpus.path), "--count", "2", "--backend", "no-such-backend"
    )
    assert cli.returncode == INPUT_ERROR
    assert error_lines(cli) == [f"error: {refused.value}"]


def test_until_passing_without_count_or_target_is_bad_input(tmp_path):
    corpus = rapport.open(tmp_path / "until.duckdb")
    with pytest.raises(rapport.BadInput, match="--count is required"):
        corpus.generate(backend="simulated", progress=False)


def test_sync_generate_inside_a_running_loop_runs_on_a_worker_thread(tmp_path):
    corpus = rapport.open(tmp_path / "loop.duckdb")

    async def cell() -> rapport.RunSummary:  # as a notebook cell runs: inside the kernel's loop
        return corpus.generate(count=3, **SIM)

    run = asyncio.run(cell())
    assert run.complete == 3


def test_agenerate_runs_on_the_callers_loop(tmp_path):
    corpus = rapport.open(tmp_path / "await.duckdb")
    loops: list[asyncio.AbstractEventLoop] = []

    async def ticker(stop: asyncio.Event) -> int:
        ticks = 0
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)
        return ticks

    async def main() -> tuple[rapport.RunSummary, rapport.JudgeSummary, int]:
        loops.append(asyncio.get_running_loop())
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        run = await corpus.agenerate(count=3, **SIM)
        judged = await corpus.ajudge(judges=["simulated"], progress=False)
        stop.set()
        return run, judged, await ticking

    run, judged, ticks = asyncio.run(main())
    assert run.complete == 3 and judged.judged == 6
    assert ticks > 0  # the caller's loop kept running its own tasks meanwhile


def test_view_inside_a_running_loop_serves_in_the_background(judged):
    async def cell() -> str:
        return judged.view(port=0)

    url = asyncio.run(cell())
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=30) as page:
        assert page.status == 200
        assert "rapport" in page.read().decode().lower()
    assert any(t.name == "rapport-view" for t in threading.enumerate())


def test_run_interrupted_is_a_keyboard_interrupt_with_the_cli_line():
    stop = rapport.RunInterrupted(2, "3 of 10 conversations complete")
    assert isinstance(stop, KeyboardInterrupt)
    assert str(stop) == (
        "interrupted: 3 of 10 conversations complete, run the same command again to resume"
    )


def test_config_types_are_the_ones_yaml_decodes_into(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("seed: 3\nbackends:\n  user_sim: {provider: simulated}\n")
    from rapport.config.run import load_run_config

    settings = load_run_config(config)
    assert isinstance(settings, rapport.RunConfig)
    assert isinstance(settings.backends.user_sim, rapport.Backend)
    assert rapport.load_domain().name == "therapy"
    assert rapport.load_domain("therapy").name == "therapy"  # a shipped domain, by name
    with pytest.raises(rapport.ConfigError):
        rapport.load_domain(str(tmp_path))  # a folder with no domain in it


def test_config_and_backend_objects_drive_a_run(tmp_path):
    from rapport.config.backend_settings import SimulatedConfig
    from rapport.config.run import Backends

    corpus = rapport.open(tmp_path / "typed.duckdb")
    simulated = SimulatedConfig()
    settings = rapport.RunConfig(seed=4, turns=2, backends=Backends(simulated, simulated))
    run = corpus.generate(count=2, config=settings, progress=False)
    assert (run.complete, run.user_backend) == (2, "simulated:rapport-simulator (simulated)")
    again = corpus.generate(count=3, seed=4, turns=2, backend=simulated, progress=False)
    assert again.plan_id == run.plan_id and again.complete == 3  # the same plan, grown by one


def _public_callables():
    for name in rapport.__all__:
        value = getattr(rapport, name)
        yield name, value
        if inspect.isclass(value) and value.__module__ == "rapport.corpus":
            for member, attribute in vars(value).items():
                if not member.startswith("_") and callable(attribute):
                    yield f"{name}.{member}", attribute


@pytest.mark.parametrize("name", sorted(rapport.__all__))
def test_every_public_name_is_exported_and_documented(name):
    value = getattr(rapport, name)
    own = vars(value).get("__doc__") if inspect.isclass(value) else value.__doc__  # not a base's
    assert (own or "").strip(), f"rapport.{name} has no docstring of its own"


def test_every_public_function_and_method_is_documented_and_typed():
    missing = []
    for name, value in _public_callables():
        if inspect.isclass(value):
            continue
        if "Raise" not in (value.__doc__ or ""):
            missing.append(f"{name}: no docstring saying what it raises")
        signature = inspect.signature(value)
        for parameter in signature.parameters.values():
            if parameter.name != "self" and parameter.annotation is inspect.Parameter.empty:
                missing.append(f"{name}({parameter.name}): no type hint")
        if signature.return_annotation is inspect.Signature.empty:
            missing.append(f"{name}: no return type")
    assert missing == []


def test_py_typed_is_shipped():
    assert (Path(rapport.__file__).parent / "py.typed").is_file()


def _interrupt_main_after_a_turn(monkeypatch) -> None:
    """Press Ctrl-C (SIGINT to this process) as the run records its first turn: a notebook
    user stopping a run under way."""
    from rapport.engine.progress import RunProgress

    record_turn = RunProgress.record_turn

    def record_and_interrupt(progress, *args, **kwargs) -> None:
        record_turn(progress, *args, **kwargs)
        if progress.turns == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RunProgress, "record_turn", record_and_interrupt)


SLOW = {"backend": "simulated:latency_ms=100", "turns": 3, "seed": 5, "max_active": 2}


def test_ctrl_c_inside_a_running_loop_stops_the_run_stored_and_resumable(tmp_path, monkeypatch):
    corpus = rapport.open(tmp_path / "stop.duckdb")
    _interrupt_main_after_a_turn(monkeypatch)

    async def cell() -> rapport.RunSummary:
        return corpus.generate(count=8, **SLOW)

    with pytest.raises(rapport.RunInterrupted) as stopped:
        asyncio.run(cell())
    assert "of 8 conversations complete, run the same command again to resume" in str(stopped.value)
    assert corpus.sql("SELECT status FROM runs").fetchall() == [("interrupted",)]
    monkeypatch.undo()
    run = corpus.generate(count=8, **SLOW, progress=False)
    assert run.complete == 8
    assert corpus.sql("SELECT status FROM runs ORDER BY started_at").fetchall() == [
        ("interrupted",),
        ("finished",),
    ]


def test_cli_exit_codes_follow_the_api_error_classes():
    from rapport.cli.exit_codes import BUDGET_REACHED, NOTHING_DONE, error_exit

    assert error_exit(rapport.BudgetReached(1.0, 1.0)) == BUDGET_REACHED
    assert error_exit(rapport.ProviderUnusable("down")) == NOTHING_DONE
    assert error_exit(rapport.BadInput("bad")) == INPUT_ERROR
    assert error_exit(rapport.StoreError("locked")) == INPUT_ERROR


def test_view_from_a_script_serves_until_ctrl_c(judged):
    import subprocess
    import sys

    script = f"import rapport; rapport.open({str(judged.path)!r}).view(port=0)"
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline()  # printed once it listens
        assert line.startswith("rapport view: http://127.0.0.1:"), server.stderr.read()
        url = line.split()[2]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
        assert server.stderr.read() == ""
    finally:
        server.kill()
