"""With no backend configured, `rapport generate` runs the embedded SmolLM2 model in process:
real text from a real model, no key, no network."""

from __future__ import annotations

import duckdb
import llama_cpp  # noqa: F401  (a required dependency: without it the suite fails)
import pytest

from tests.conftest import rapport

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README


@pytest.mark.serial  # llama.cpp in process: its threads spin, beside another worker they crawl
def test_generate_without_a_backend_uses_the_embedded_model(tmp_path):
    db = tmp_path / "demo.duckdb"
    result = rapport("generate", "--db", str(db), "--count", "1", "--turns", "1", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "1/1 complete" in result.stdout
    assert "llamacpp:SmolLM2-135M-Instruct" in result.stdout
    assert "simulated" not in result.stdout
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT role, backend, model, completion_tokens, length(content) FROM messages ORDER BY turn_index"
        ).fetchall()
    assert [row[:2] for row in rows] == [("user", "llamacpp"), ("assistant", "llamacpp")]
    assert all(
        row[2].startswith("SmolLM2-135M-Instruct") and row[3] > 0 and row[4] > 0 for row in rows
    )
