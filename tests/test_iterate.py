"""`rapport iterate`: a small batch, judged, what to fix, and the change since last time."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from tests.conftest import TINY_DOMAIN, rapport

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README

pytestmark = pytest.mark.slow

OFFLINE = ("--count", "12", "--turns", "3", "--judge", "simulated")


@pytest.fixture
def domain(tmp_path):
    folder = tmp_path / "bikes"
    shutil.copytree(TINY_DOMAIN, folder)
    return folder


def _iterate(domain, *extra: str) -> str:
    result = rapport("iterate", "--domain", str(domain), *OFFLINE, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_first_iteration_reports_what_to_fix(domain):
    output = _iterate(domain, "--backend", "simulated")
    assert "iteration 1 (first iteration)" in output
    assert "pass rate:" in output
    assert "criteria failing most" in output and "flaws failing most" in output
    assert "topics failing most" in output and "assistant phrases over-used" in output
    assert (domain / "iterations.duckdb").exists()


def test_a_second_iteration_after_an_edit_shows_the_diff(domain):
    _iterate(domain, "--backend", "simulated:quality=0.5")
    prompt = domain / "prompts" / "assistant.md"
    prompt.write_text(prompt.read_text() + "\nAnswer the question the rider asked first.\n")
    output = _iterate(domain, "--backend", "simulated:quality=0.95")
    assert "iteration 2 (compared with iteration 1)" in output
    assert "pass rate:" in output and ("▲" in output or "▼" in output)
    with duckdb.connect(str(domain / "iterations.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            "SELECT iteration, figures->>'$.pass_rate' FROM iterations ORDER BY 1"
        ).fetchall()
    assert [row[0] for row in rows] == [1, 2]
    assert float(rows[1][1]) > float(rows[0][1])


def test_rerunning_without_a_change_is_the_same_iteration(domain):
    _iterate(domain, "--backend", "simulated")
    output = _iterate(domain, "--backend", "simulated")
    assert "iteration 1 (first iteration)" in output
    with duckdb.connect(str(domain / "iterations.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM iterations").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM conversations").fetchone() == (12,)


def test_a_broken_domain_is_one_line_and_writes_nothing(domain):
    (domain / "rubric.yaml").write_text("criteria: [}\n")
    result = rapport("iterate", "--domain", str(domain), *OFFLINE, "--backend", "simulated")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "rubric.yaml" in result.stderr
    assert not (domain / "iterations.duckdb").exists()
