"""The `anthropic` backend: the Messages API through the official AsyncAnthropic SDK."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping, Sequence

import anthropic
from anthropic import AsyncAnthropic

from rapport.engine.backend import usage_or_estimate
from rapport.engine.backends.http_errors import header_int, short_message, translate_sdk_error
from rapport.engine.errors import BackendError
from rapport.engine.types import ChatMessage, Completion, CompletionParams, ReportedLimits

START_MESSAGE = "(start)"  # the API wants the first message from the user
EPHEMERAL = {"type": "ephemeral"}  # a prompt-cache breakpoint (5-minute lifetime)
# 429s that no amount of waiting within a run will clear.
SPEND_LIMIT_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached"})


def reported_limits(headers: Mapping[str, str]) -> ReportedLimits | None:
    """Anthropic's `anthropic-ratelimit-*-limit` headers (per minute)."""
    limits = ReportedLimits(
        requests=header_int(headers, "anthropic-ratelimit-requests-limit"),
        tokens=header_int(headers, "anthropic-ratelimit-tokens-limit"),
        input_tokens=header_int(headers, "anthropic-ratelimit-input-tokens-limit"),
        output_tokens=header_int(headers, "anthropic-ratelimit-output-tokens-limit"),
    )
    return None if limits == ReportedLimits() else limits


def json_instruction(schema: Mapping[str, object]) -> str:
    """Asks for bare JSON: this path has no strict JSON mode, so the prompt has to say it."""
    return (
        "Reply with a single JSON value and nothing else (no prose, no code fences), "
        f"matching this JSON schema: {json.dumps(schema, separators=(',', ':'))}"
    )


def to_request(
    messages: Sequence[ChatMessage], params: CompletionParams
) -> tuple[str | None, list[dict[str, str]]]:
    """(system, messages) the Anthropic way: system text apart, then strictly alternating
    turns that start with the user. Consecutive same-role messages are merged."""
    system = [m.content for m in messages if m.role == "system"]
    if params.json_schema is not None:
        system.append(json_instruction(params.json_schema))
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": message.role, "content": message.content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": START_MESSAGE})
    return ("\n\n".join(system) or None), turns


def with_cache_breakpoints(
    system: str | None, turns: list[dict[str, str]]
) -> tuple[list[dict[str, object]] | None, list[dict[str, object]]]:
    """The request with two `cache_control` breakpoints (the API allows four): the system
    prompt, fixed for a conversation and role, and the end of the history, moved to the last
    message on every turn so that the next turn reads all of this one from the cache. Every
    message is a text block list either way, so each request extends the previous one."""
    blocks = None
    if system is not None:
        blocks = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    messages: list[dict[str, object]] = [
        {"role": turn["role"], "content": [{"type": "text", "text": turn["content"]}]}
        for turn in turns
    ]
    last = messages[-1]["content"]
    assert isinstance(last, list)
    last[-1] = {**last[-1], "cache_control": EPHEMERAL}
    return blocks, messages


def usage_tokens(usage: object) -> tuple[int | None, int, int]:
    """(prompt tokens, cache read, cache write). Anthropic's `input_tokens` leaves out the
    tokens read from or written to the cache; the prompt counts all three (as OpenAI's does)."""
    read = getattr(usage, "cache_read_input_tokens", None)
    write = getattr(usage, "cache_creation_input_tokens", None)
    read = read if isinstance(read, int) else 0
    write = write if isinstance(write, int) else 0
    uncached = getattr(usage, "input_tokens", None)
    if not isinstance(uncached, int):
        return None, read, write
    return uncached + read + write, read, write


class AnthropicBackend:
    """Messages through the official SDK; the SDK's own retries are off (the gateway retries,
    so that every caller shares one view of the provider's limits).

    `params.temperature` and `params.seed` are not sent: `messages.create` in anthropic 2.x
    takes no sampling parameters, and the Messages API has no seed."""

    provider = "anthropic"

    def __init__(self, *, model: str, api_key: str, base_url: str | None, timeout_s: float) -> None:
        self.model = model
        self._client = AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        request = message_request(self.model, messages, params)
        started = time.perf_counter()
        try:
            raw = await self._client.messages.with_raw_response.create(
                **request,  # type: ignore[arg-type]
                # the gateway's raised timeout, when it raised the client's own to fit
                **({} if params.timeout_s is None else {"timeout": params.timeout_s}),
            )
            response = raw.parse()
            if inspect.isawaitable(response):  # 2.x parses asynchronously; 0.x did not
                response = await response
        except Exception as error:
            if isinstance(error, anthropic.RateLimitError) and (
                getattr(error, "error_code", None) in SPEND_LIMIT_CODES
            ):  # a monthly or contract cap: waiting will not clear it
                raise BackendError(
                    "spend_limit", short_message(error.message), retryable=False
                ) from error
            translated = translate_sdk_error(error, anthropic, reported_limits)
            if translated is None:
                raise
            raise translated from error
        return completion_of(
            response,
            messages,
            params,
            self.model,
            time.perf_counter() - started,
            reported_limits(raw.headers),
        )

    @property
    def client(self) -> AsyncAnthropic:
        """The SDK client (the batch judge sends its message batches through it)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.close()


def message_request(
    model: str, messages: Sequence[ChatMessage], params: CompletionParams
) -> dict[str, object]:
    """The parameters of one Messages API call, sent live or as a message batch item's
    `params` (the same prompt, cache breakpoints and token budget either way)."""
    system, turns = to_request(messages, params)
    request: dict[str, object] = {"model": model, "max_tokens": params.max_tokens}
    sent: list[dict[str, object]] | list[dict[str, str]] = turns
    if params.cache_key is not None:
        blocks, sent = with_cache_breakpoints(system, turns)
        if blocks is not None:
            request["system"] = blocks
    elif system is not None:
        request["system"] = system
    request["messages"] = sent
    return request


def completion_of(
    response: object,
    messages: Sequence[ChatMessage],
    params: CompletionParams,
    model: str,
    latency_s: float,
    limits: ReportedLimits | None = None,
) -> Completion:
    """The Completion in a message answering `messages` (live, or a batch item's result); a
    refusal, no text or a body that is not a message is the BackendError a live call raises."""
    if not isinstance(response, anthropic.types.Message):
        # Without strict validation the SDK hands back a non-JSON body as a string.
        raise BackendError("malformed", "response is not a message", retryable=True)
    stop_reason = getattr(response, "stop_reason", None)
    if stop_reason == "refusal":
        raise BackendError("content_filter", "provider refused to complete", retryable=False)
    blocks = getattr(response, "content", None) or []
    text = "".join(
        getattr(block, "text", "") or ""
        for block in blocks
        if getattr(block, "type", None) == "text"
    ).strip()
    if not text:
        raise BackendError("empty", "completion text is empty", retryable=True)
    system, turns = to_request(messages, params)
    usage = getattr(response, "usage", None)
    reported_prompt, cache_read, cache_write = usage_tokens(usage)
    prompt_tokens, completion_tokens = usage_or_estimate(
        len(system or "") + sum(len(t["content"]) for t in turns),
        text,
        reported_prompt,
        getattr(usage, "output_tokens", None),
    )
    return Completion(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=latency_s,
        model=getattr(response, "model", None) or model,
        provider=AnthropicBackend.provider,
        finish_reason=stop_reason,
        limits=limits,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
