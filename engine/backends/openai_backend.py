"""The `openai` backend: AsyncOpenAI against OpenAI or any OpenAI-compatible server."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import NoReturn

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from rapport.engine.backend import usage_or_estimate
from rapport.engine.backends.http_errors import header_int, translate_sdk_error
from rapport.engine.backends.structured_output import (
    MODES,
    StructuredMode,
    StructuredOutputLadder,
    names_response_format,
    response_format,
    with_instruction,
)
from rapport.engine.errors import BackendError
from rapport.engine.types import ChatMessage, Completion, CompletionParams, ReportedLimits


def reported_limits(headers: Mapping[str, str]) -> ReportedLimits | None:
    """OpenAI's `x-ratelimit-limit-requests` / `x-ratelimit-limit-tokens` (per minute)."""
    requests = header_int(headers, "x-ratelimit-limit-requests")
    tokens = header_int(headers, "x-ratelimit-limit-tokens")
    if requests is None and tokens is None:
        return None
    return ReportedLimits(requests=requests, tokens=tokens)


class _FormatRejected(Exception):
    """The server refused the `response_format` sent (the SDK's error is the cause)."""

    def __init__(self, mode: StructuredMode) -> None:
        super().__init__(mode)
        self.mode = mode


FIELD_REFUSED_STATUS = frozenset({400, 422})  # how servers refuse a request field they lack


class _CacheKeyRejected(Exception):
    """The server refused the `prompt_cache_key` field (the SDK's error is the cause)."""


def names_cache_key(error_text: str) -> bool:
    """A rejection of the prompt-cache field itself: OpenAI-compatible servers that predate it
    may refuse unknown fields."""
    return "prompt_cache_key" in error_text.lower()


def cached_prompt_tokens(usage: object) -> int:
    """`usage.prompt_tokens_details.cached_tokens`: of the prompt tokens, those read from the
    provider's prompt cache (OpenAI counts them in prompt_tokens and reports no writes)."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    return cached if isinstance(cached, int) and cached > 0 else 0


class OpenAIBackend:
    """Chat completions through the official SDK; the SDK's own retries are off (the gateway
    retries, so that every caller shares one view of the provider's limits). Structured output
    uses the strongest mode the server accepts (see engine.backends.structured_output)."""

    provider = "openai"

    def __init__(self, *, model: str, api_key: str, base_url: str | None, timeout_s: float) -> None:
        self.model = model
        self.base_url = base_url
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )
        self.structured_output = StructuredOutputLadder()
        # False once the server refused `prompt_cache_key`: never sent again by this backend.
        self.sends_cache_key = True

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        if params.json_schema is None:
            return await self._create_with_cache_key(messages, params, None)
        for _ in MODES:  # one step down per refusal, at most to the last mode
            mode = self.structured_output.mode
            try:
                return await self._create_with_cache_key(messages, params, mode)
            except _FormatRejected as rejection:
                refusal = rejection.__cause__
                assert isinstance(refusal, Exception)
                if not self.structured_output.step_down(rejection.mode):
                    break
        _raise_translated(refusal)

    async def _create_with_cache_key(
        self,
        messages: Sequence[ChatMessage],
        params: CompletionParams,
        mode: StructuredMode | None,
    ) -> Completion:
        """With the cache key while the server takes it; once refused, without it from then on
        (the request is sent again at once: the refusal was of the field, not the call)."""
        cache_key = params.cache_key if self.sends_cache_key else None
        try:
            return await self._create(messages, params, mode, cache_key)
        except _CacheKeyRejected:
            self.sends_cache_key = False
            return await self._create(messages, params, mode, None)

    async def _create(
        self,
        messages: Sequence[ChatMessage],
        params: CompletionParams,
        mode: StructuredMode | None,
        cache_key: str | None = None,
    ) -> Completion:
        started = time.perf_counter()
        body = chat_request(self.model, messages, params, mode, cache_key)
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **body,  # type: ignore[arg-type]
                **_timeout(params),
            )
            response = raw.parse()
        except openai.APIStatusError as error:
            if (
                cache_key is not None
                and error.status_code in FIELD_REFUSED_STATUS
                and names_cache_key(f"{error.message} {error.body}")
            ):
                raise _CacheKeyRejected from error
            rejected_format = "response_format" in body and names_response_format(
                f"{error.message} {error.body}"
            )
            if mode is not None and rejected_format:
                raise _FormatRejected(mode) from error
            _raise_translated(error)
        except Exception as error:
            _raise_translated(error)
        return completion_of(
            response,
            body,
            self.model,
            time.perf_counter() - started,
            reported_limits(raw.headers),
        )

    @property
    def client(self) -> AsyncOpenAI:
        """The SDK client (the batch judge sends its files and batches through it)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.close()


def chat_request(
    model: str,
    messages: Sequence[ChatMessage],
    params: CompletionParams,
    mode: StructuredMode | None,
    cache_key: str | None = None,
) -> dict[str, object]:
    """The body of one chat completion, sent live or as a line of a batch file (the same
    prompt, structured output field and token budget either way)."""
    body: dict[str, object] = {}
    if cache_key is not None:
        body["prompt_cache_key"] = cache_key
    if mode is not None and params.json_schema is not None:
        field = response_format(mode, params.json_schema)
        if field is None:
            messages = with_instruction(messages, params.json_schema)
        else:
            body["response_format"] = field
    return {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "seed": params.seed,
        **body,
    }


def completion_of(
    response: ChatCompletion,
    body: Mapping[str, object],
    model: str,
    latency_s: float,
    limits: ReportedLimits | None = None,
) -> Completion:
    """The Completion in a chat completion answering `body` (live, or a batch item's result);
    no choice, no text or a filtered one is the BackendError a live call raises."""
    if not response.choices:
        raise BackendError("empty", "completion has no choices", retryable=True)
    choice = response.choices[0]
    text = (choice.message.content or "").strip() if choice.message else ""
    if choice.finish_reason == "content_filter":
        raise BackendError("content_filter", "provider filtered the completion", retryable=False)
    if not text:
        raise BackendError("empty", "completion text is empty", retryable=True)
    usage = response.usage
    sent = body.get("messages")
    prompt_chars = sum(len(str(m["content"])) for m in sent) if isinstance(sent, list) else 0
    prompt_tokens, completion_tokens = usage_or_estimate(
        prompt_chars,
        text,
        usage.prompt_tokens if usage else None,
        usage.completion_tokens if usage else None,
    )
    return Completion(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=latency_s,
        model=response.model or model,
        provider=OpenAIBackend.provider,
        finish_reason=choice.finish_reason,
        limits=limits,
        cache_read_tokens=min(cached_prompt_tokens(usage), prompt_tokens) if usage else 0,
    )


def _timeout(params: CompletionParams) -> dict[str, float]:
    """The SDK's per-call `timeout`, when the gateway raised the client's own to fit."""
    return {} if params.timeout_s is None else {"timeout": params.timeout_s}


def _raise_translated(error: Exception) -> NoReturn:
    """Raise the BackendError for an SDK error; anything else as it is."""
    translated = translate_sdk_error(error, openai, reported_limits)
    if translated is None:
        raise error
    raise translated from error
