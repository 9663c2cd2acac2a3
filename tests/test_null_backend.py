"""The null backend (`--backend null`): a fixed reply at once, nothing written and nothing read,
so a run measures the engine alone. It still plays whole conversations into a real DuckDB."""

from __future__ import annotations

import anyio
import duckdb

from rapport.config.backend_settings import NullConfig
from rapport.config.run import load_run_config
from rapport.engine.backend import simulated
from rapport.engine.backends.null_backend import NULL_MODEL, NullBackend
from rapport.engine.types import ChatMessage, CompletionParams
from tests.conftest import rapport

PARAMS = CompletionParams(max_tokens=50, temperature=0.7)


def test_it_answers_the_same_prebuilt_reply_to_every_call():
    backend = NullBackend(reply="fine")
    first = anyio.run(backend.complete, [ChatMessage("user", "hi " * 100)], PARAMS)
    second = anyio.run(backend.complete, [ChatMessage("user", "other")], PARAMS)
    assert first is second  # no Completion built per call
    assert (first.text, first.prompt_tokens, first.completion_tokens) == ("fine", 0, 1)
    assert (first.provider, first.model, first.finish_reason) == ("null", NULL_MODEL, "stop")
    assert simulated(backend)  # shown as not a model wherever it is labelled


def test_yaml_null_provider_needs_no_quotes(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("backends:\n  user_sim: {provider: null}\n  assistant: {provider: 'null'}\n")
    config = load_run_config(path)
    assert config.backends.user_sim == config.backends.assistant == NullConfig()


def test_generate_with_the_null_backend_stores_whole_conversations(tmp_path):
    db = tmp_path / "null.duckdb"
    result = rapport(
        "generate", "--db", str(db), "--count", "6", "--turns", "3",
        "--user-backend", "null:reply=tell me more", "--assistant-backend", "null", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "null:fixed-reply (simulated)" in result.stdout
    with duckdb.connect(str(db), read_only=True) as conn:
        statuses = conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
        rows = conn.execute(
            "SELECT role, content, backend, count(*), min(turn_index), max(turn_index) "
            "FROM messages GROUP BY ALL ORDER BY role"
        ).fetchall()
    assert statuses == [("complete", 6)]
    assert rows == [
        ("assistant", "ok", "null", 18, 1, 5),
        ("user", "tell me more", "null", 18, 0, 4),
    ]
