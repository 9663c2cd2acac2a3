"""`rapport eval`: two simulated "models" with a known quality gap on held-out scenarios."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import duckdb
import matplotlib.image
import msgspec
import pytest

from rapport.config.backend_spec import parse_backend_spec
from rapport.evaluation.families import family_of
from rapport.evaluation.report import write_eval_report
from rapport.evaluation.summary import EvalSummary
from rapport.stages.evaluate import EvalRequest, run_eval
from rapport.stages.judge import JudgeRequest, judge_corpus
from tests.conftest import TINY_DOMAIN, rapport

GOOD, WEAK = "simulated:quality=0.9", "simulated:quality=0.6"


def _eval(db, baseline: str, candidate: str, scenarios: int = 30, **extra) -> EvalSummary:
    request = EvalRequest(
        db=db,
        scenarios=scenarios,
        baseline=baseline,
        candidate=candidate,
        user_backend="simulated",
        judges=("simulated",),
        turns=3,
        **extra,
    )
    return run_eval(request, environ={})


def test_a_better_candidate_wins_with_a_small_p(db_path):
    summary = _eval(db_path, WEAK, GOOD)
    paired = summary.paired
    assert paired.n == 30
    assert paired.mean_difference > 0.05
    assert paired.difference_ci is not None and paired.difference_ci.low > 0
    assert paired.wilcoxon_p is not None and paired.wilcoxon_p < 0.01
    assert paired.t_p is not None and paired.t_p < 0.01
    assert paired.cohens_dz is not None and paired.cohens_dz > 0.5
    base, cand = summary.sides
    assert cand.mean_score > base.mean_score
    assert all(delta.delta >= 0 for delta in summary.categories)


def test_a_worse_candidate_loses(db_path):
    summary = _eval(db_path, GOOD, WEAK)
    assert summary.paired.mean_difference < -0.05
    assert summary.paired.wilcoxon_p < 0.01 and summary.paired.t_p < 0.01


def test_no_gap_gives_no_small_p(db_path):
    summary = _eval(
        db_path, "simulated:quality=0.8,model=model-a", "simulated:quality=0.8,model=model-b"
    )
    assert summary.paired.n == 30
    assert summary.paired.wilcoxon_p is not None and summary.paired.wilcoxon_p > 0.05
    assert summary.paired.t_p is not None and summary.paired.t_p > 0.05


def test_the_user_simulator_opens_each_scenario_the_same_way_on_both_sides(db_path):
    summary = _eval(db_path, WEAK, GOOD, scenarios=8)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        openers = conn.execute(
            """
            SELECT e.scenario_index, list(m.content ORDER BY e.side)
            FROM eval_conversations e JOIN messages m USING (conversation_id)
            WHERE e.eval_id = ? AND m.turn_index = 0 GROUP BY 1
            """,
            [summary.eval_id],
        ).fetchall()
    assert len(openers) == 8
    assert all(first == second for _, (first, second) in openers)


def test_results_are_stored_and_held_out_scenarios_are_marked(db_path):
    summary = _eval(db_path, WEAK, GOOD, scenarios=6)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        scores = conn.execute(
            "SELECT side, count(*), count(score) FROM eval_scores WHERE eval_id = ? GROUP BY 1 "
            "ORDER BY 1",
            [summary.eval_id],
        ).fetchall()
        held_out = conn.execute(
            "SELECT count(*), bool_and(held_out) FROM scenarios s JOIN plans p USING (plan_id) "
            "WHERE p.purpose IN ('held_out', 'eval')"
        ).fetchone()
        stored = conn.execute(
            "SELECT baseline, candidate, scenarios, summary->>'$.paired.n' FROM eval_runs"
        ).fetchone()
        corpus = conn.execute("SELECT count(*) FROM conversation_overview").fetchone()
    assert scores == [("baseline", 6, 6), ("candidate", 6, 6)]
    assert held_out == (18, True)  # 6 held-out scenarios and each side's copy of them
    assert stored == (WEAK, GOOD, 6, "6")
    assert corpus == (0,)  # evaluation conversations are not corpus


def test_the_corpus_judge_leaves_evaluation_conversations_alone(db_path):
    _eval(db_path, WEAK, GOOD, scenarios=4)
    summary = judge_corpus(JudgeRequest(db=db_path, judges=("simulated:model=other",)))
    assert summary.judged == 0


def test_rerunning_resumes_and_a_larger_n_extends_the_same_eval(db_path):
    first = _eval(db_path, WEAK, GOOD, scenarios=5)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        before = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    again = _eval(db_path, WEAK, GOOD, scenarios=5)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == before
    larger = _eval(db_path, WEAK, GOOD, scenarios=8)
    assert first.eval_id == again.eval_id == larger.eval_id
    assert again.paired == first.paired
    assert larger.paired.n == 8
    with duckdb.connect(str(db_path), read_only=True) as conn:
        runs = conn.execute("SELECT count(*), max(scenarios) FROM eval_runs").fetchone()
        verdicts = conn.execute(
            "SELECT count(*) = count(DISTINCT (conversation_id, judge_id, criterion_id)) "
            "FROM verdicts"
        ).fetchone()
    assert runs == (1, 8)
    assert verdicts == (True,)


def test_a_small_n_is_called_out(db_path):
    summary = _eval(db_path, WEAK, GOOD, scenarios=5)
    assert any("too few" in warning for warning in summary.warnings)
    assert any("rapport-simulator family" in warning for warning in summary.warnings)


def test_the_report_files_exist_and_load(db_path, tmp_path):
    summary = _eval(db_path, WEAK, GOOD, scenarios=12)
    files = write_eval_report(summary, tmp_path / "report", msgspec.json.encode(summary).decode())
    report = files[0].read_text()
    assert "N = 12" in report and "Wilcoxon" in report and "paired t test" in report
    assert "## Where the two sides differ most" in report
    loaded = msgspec.json.decode(
        (tmp_path / "report" / "summary.json").read_bytes(), type=EvalSummary
    )
    assert loaded == summary
    for png in ("scores.png", "categories.png", "criteria.png"):
        assert matplotlib.image.imread(tmp_path / "report" / png).shape[0] > 100


@pytest.mark.slow
def test_the_command_line_writes_the_report_and_rejects_bad_specs(tmp_path):
    db, out = tmp_path / "e.duckdb", tmp_path / "out"
    args = ["eval", "--db", str(db), "--scenarios", "6", "--turns", "2",
            "--domain", str(TINY_DOMAIN), "--user-backend", "simulated",
            "--judges", "simulated", "--out", str(out)]  # fmt: skip
    result = rapport(*args, "--baseline", WEAK, "--candidate", GOOD)
    assert result.returncode == 0, result.stderr
    assert "difference (candidate − baseline) over N = 6" in result.stdout
    assert (out / "report.md").exists()
    bad = rapport(*args, "--baseline", "nonsense:x", "--candidate", GOOD)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--baseline" in bad.stderr
    keyless = rapport(*args, "--baseline", "openai:gpt-4o-mini", "--candidate", GOOD,
                      env={"OPENAI_API_KEY": ""})  # fmt: skip
    assert keyless.returncode == 2 and "OPENAI_API_KEY" in keyless.stderr


def _scores(db) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(
            "SELECT side, scenario_index, judge_id, score, passed FROM eval_scores "
            "WHERE score IS NOT NULL ORDER BY ALL"
        ).fetchall()


@pytest.mark.slow
def test_a_killed_eval_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    args = ["--scenarios", "20", "--turns", "4", "--user-backend", "simulated:latency_ms=150",
            "--baseline", "simulated:quality=0.6,latency_ms=150",
            "--candidate", "simulated:quality=0.9,latency_ms=150", "--judges", "simulated",
            "--max-active", "4", "--quiet"]  # fmt: skip
    killed, clean = tmp_path / "killed.duckdb", tmp_path / "clean.duckdb"
    process = subprocess.Popen(
        [sys.executable, "-m", "rapport", "eval", "--db", str(killed), *args,
         "--out", str(tmp_path / "r1")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, "the eval ended before it could be killed"
        assert time.monotonic() < deadline, "the eval never reached the kill point"
        if killed.exists():
            try:
                with duckdb.connect(str(killed), read_only=True) as conn:
                    stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            except duckdb.Error:
                stored = 0
            if stored > 0:  # the first commit, however many rows it carries: mid-run, always
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                break
        time.sleep(0.05)
    assert len(_scores(killed)) < 40  # not finished when killed
    assert (
        rapport("eval", "--db", str(killed), *args, "--out", str(tmp_path / "r2")).returncode == 0
    )
    assert rapport("eval", "--db", str(clean), *args, "--out", str(tmp_path / "r3")).returncode == 0
    assert _scores(killed) == _scores(clean)
    assert len(_scores(clean)) == 40


def test_model_families_come_from_names_before_the_architecture(tmp_path):
    import gguf

    path = tmp_path / "smollm2-therapy-lora.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("merged")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert family_of(parse_backend_spec(f"gguf:{path}")) == "smollm"
    assert family_of(parse_backend_spec("openai:gpt-4o-mini")) == "gpt"
    assert family_of(parse_backend_spec("anthropic:claude-haiku-4-5")) == "claude"
    assert family_of(parse_backend_spec("simulated")) == "rapport-simulator"
