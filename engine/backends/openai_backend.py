"""The `openai` backend: AsyncOpenAI against OpenAI or any OpenAI-compatible server."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import openai
from openai import AsyncOpenAI

from config.constants import CHARS_PER_TOKEN_ESTIMATE
from engine.backend import estimate_tokens
from engine.backends.http_errors import header_int, translate_sdk_error
from engine.errors import BackendError
from engine.types import ChatMessage, Completion, CompletionParams, ReportedLimits


def reported_limits(headers: Mapping[str, str]) -> ReportedLimits | None:
    """OpenAI's `x-ratelimit-limit-requests` / `x-ratelimit-limit-tokens` (per minute)."""
    requests = header_int(headers, "x-ratelimit-limit-requests")
    tokens = header_int(headers, "x-ratelimit-limit-tokens")
    if requests is None and tokens is None:
        return None
    return ReportedLimits(requests=requests, tokens=tokens)


class OpenAIBackend:
    """Chat completions through the official SDK; the SDK's own retries are off (the gateway
    retries, so that every caller shares one view of the provider's limits)."""

    provider = "openai"
    simulated = False

    def __init__(self, *, model: str, api_key: str, base_url: str | None, timeout_s: float) -> None:
        self.model = model
        self.base_url = base_url
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        started = time.perf_counter()
        extra: dict[str, object] = {}
        if params.json_schema is not None:  # structured output (OpenAI, vLLM, llama.cpp server)
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": params.json_schema, "strict": False},
            }
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                **extra,  # type: ignore[arg-type]
            )
            response = raw.parse()
        except Exception as error:
            translated = translate_sdk_error(error, openai, reported_limits)
            if translated is None:
                raise
            raise translated from error
        latency = time.perf_counter() - started
        if not response.choices:
            raise BackendError("empty", "completion has no choices", retryable=True)
        choice = response.choices[0]
        text = (choice.message.content or "").strip() if choice.message else ""
        if choice.finish_reason == "content_filter":
            raise BackendError(
                "content_filter", "provider filtered the completion", retryable=False
            )
        if not text:
            raise BackendError("empty", "completion text is empty", retryable=True)
        limits = reported_limits(raw.headers)
        usage = response.usage
        prompt_chars = sum(len(m.content) for m in messages)
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens
            if usage
            else round(prompt_chars / CHARS_PER_TOKEN_ESTIMATE),
            completion_tokens=usage.completion_tokens
            if usage
            else estimate_tokens(text, CHARS_PER_TOKEN_ESTIMATE),
            latency_s=latency,
            model=response.model or self.model,
            provider=self.provider,
            finish_reason=choice.finish_reason,
            limits=limits,
        )

    async def aclose(self) -> None:
        await self._client.close()
