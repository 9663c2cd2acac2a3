"""The anthropic backend over real HTTP, through the official SDK, against a local aiohttp server
that speaks the Messages API (POST /v1/messages)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from aiohttp import web

from rapport.engine.backends.anthropic_backend import AnthropicBackend
from rapport.engine.errors import TurnFailed
from rapport.engine.gateway import Gateway
from rapport.engine.types import ChatMessage, CompletionParams, ReportedLimits
from tests.clocks import RecordingClock

PARAMS = CompletionParams(max_tokens=64, temperature=0.5)
HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there")]
SECRET = "sk-ant-test-7c1e0b94d2"
REPLY = "Hi. How can I help?"
LIMIT_HEADERS = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-tokens-limit": "100000",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-output-tokens-limit": "20000",
}


@dataclass
class ServerState:
    script: list[str]  # what to answer to successive requests; then "ok"
    retry_after: str = "0.1"
    bodies: list[dict] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)

    def next_action(self) -> str:
        return self.script.pop(0) if self.script else "ok"


def _error(status: int, kind: str, message: str, **extra) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message, **extra}}
    return web.json_response(body, status=status, headers={"request-id": "req_test"})


def _message(body: dict, content: list[dict], stop_reason: str) -> web.Response:
    prompt_words = sum(len(str(m["content"]).split()) for m in body["messages"])
    return web.json_response(
        {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_words + 7, "output_tokens": 9},
        },
        headers={**LIMIT_HEADERS, "request-id": "req_test"},
    )


def _create_app(state: ServerState) -> web.Application:
    async def messages(request: web.Request) -> web.Response:
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "")
        state.api_keys.append(key.removeprefix("Bearer "))
        body = await request.json()
        state.bodies.append(body)
        action = state.next_action()
        if action == "429":
            headers = {"retry-after": state.retry_after}
            response = _error(429, "rate_limit_error", "Number of requests has exceeded your limit")
            response.headers.update(headers)
            return response
        if action == "spend_limit":
            details = {"error_code": "enforced_spend_limit_reached"}
            return _error(429, "rate_limit_error", "Monthly limit reached", details=details)
        if action == "529":
            return _error(529, "overloaded_error", "Overloaded")
        if action == "400":
            return _error(400, "invalid_request_error", "messages: roles must alternate")
        if action == "slow":
            await asyncio.sleep(1)
        if action == "malformed":
            return web.Response(
                text='{"id": "msg_broken", "content": [', content_type="application/json"
            )
        if action == "refusal":
            return _message(body, [], "refusal")
        if action == "empty":
            return _message(body, [{"type": "text", "text": "  "}], "end_turn")
        content = [
            {"type": "thinking", "thinking": "short", "signature": "sig"},
            {"type": "text", "text": REPLY[:4]},
            {"type": "text", "text": REPLY[4:]},
        ]
        return _message(body, content, "end_turn")

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


@contextmanager
def running_server(*script: str) -> Iterator[tuple[str, ServerState]]:
    """Serve on a free loopback port in a background thread; yields (base_url, state)."""
    state = ServerState(list(script))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_create_app(state))
    port: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield f"http://127.0.0.1:{port[0]}", state
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _complete(
    base_url: str,
    messages=HELLO,
    max_retries: int = 3,
    timeout_s: float = 10,
    clock: RecordingClock | None = None,
):
    backend = AnthropicBackend(
        model="claude-test", api_key=SECRET, base_url=base_url, timeout_s=timeout_s
    )
    gateway = Gateway(
        backend, max_retries=max_retries, backoff_min_s=0.01, backoff_max_s=0.05, clock=clock
    )

    async def go():
        try:
            return await gateway.complete(messages, PARAMS), gateway.stats
        finally:
            await gateway.aclose()

    return anyio.run(go)


def test_text_usage_model_and_limits_are_reported():
    with running_server() as (base_url, state):
        completion, stats = _complete(base_url)
    assert completion.text == REPLY  # the text blocks joined, the thinking block left out
    assert completion.prompt_tokens == 2 + 7 and completion.completion_tokens == 9
    assert completion.model == "claude-test" and completion.provider == "anthropic"
    assert completion.finish_reason == "end_turn" and completion.latency_s > 0
    assert completion.limits == ReportedLimits(
        requests=50, tokens=100_000, input_tokens=80_000, output_tokens=20_000
    )
    assert stats.requests == 1 and stats.retries == 0
    assert state.bodies[0]["max_tokens"] == 64 and state.bodies[0]["model"] == "claude-test"


def test_system_prompt_goes_in_the_system_field():
    with running_server() as (base_url, state):
        _complete(base_url)
    body = state.bodies[0]
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Hello there"}]


def test_conversation_is_sent_starting_with_the_user_and_alternating():
    messages = [
        ChatMessage("system", "You play the user."),
        ChatMessage("assistant", "I feel stuck."),
        ChatMessage("assistant", "Really stuck."),
        ChatMessage("user", "Tell me more."),
        ChatMessage("system", "Keep it short."),
    ]
    with running_server() as (base_url, state):
        _complete(base_url, messages)
    body = state.bodies[0]
    assert body["system"] == "You play the user.\n\nKeep it short."
    assert body["messages"] == [
        {"role": "user", "content": "(start)"},
        {"role": "assistant", "content": "I feel stuck.\n\nReally stuck."},
        {"role": "user", "content": "Tell me more."},
    ]


def test_json_schema_is_asked_for_in_the_system_prompt():
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    params = CompletionParams(max_tokens=32, temperature=0.0, json_schema=schema)
    with running_server() as (base_url, state):
        backend = AnthropicBackend(
            model="claude-test", api_key=SECRET, base_url=base_url, timeout_s=10
        )

        async def go():
            try:
                return await backend.complete(HELLO, params)
            finally:
                await backend.aclose()

        anyio.run(go)
    system = state.bodies[0]["system"]
    assert system.startswith("Be brief.\n\n") and "JSON" in system
    assert '"score":{"type":"integer"}' in system


def test_rate_limit_is_retried_after_the_providers_wait():
    clock = RecordingClock()
    with running_server("429", "429") as (base_url, state):
        completion, stats = _complete(base_url, clock=clock)
    assert completion.text == REPLY
    assert len(state.bodies) == 3 and stats.rate_limited == 2 and stats.retries == 2
    # Each retry waited what retry-after (0.1 s) asked, plus at most backoff_min_s of jitter.
    assert len(clock.sleeps) == 2
    assert all(0.1 <= wait <= 0.1 + 0.01 for wait in clock.sleeps), clock.sleeps


def test_overloaded_and_malformed_answers_are_retried():
    with running_server("529", "malformed", "empty") as (base_url, state):
        completion, stats = _complete(base_url)
    assert completion.text == REPLY
    assert len(state.bodies) == 4 and stats.retries == 3


def test_retries_run_out_into_a_turn_failure():
    with running_server(*["529"] * 5) as (base_url, state), pytest.raises(TurnFailed) as caught:
        _complete(base_url, max_retries=2)
    assert caught.value.kind == "http_529" and caught.value.attempts == 3
    assert len(state.bodies) == 3


@pytest.mark.parametrize(
    ("answer", "kind"),
    [("refusal", "content_filter"), ("400", "http_400"), ("spend_limit", "spend_limit")],
)
def test_refusals_and_client_errors_are_not_retried(answer, kind):
    with running_server(answer) as (base_url, state), pytest.raises(TurnFailed) as caught:
        _complete(base_url)
    assert caught.value.kind == kind and caught.value.attempts == 1
    assert len(state.bodies) == 1  # the server saw exactly one request


def test_timeouts_and_unreachable_servers_are_retryable_failures():
    with running_server("slow") as (base_url, _), pytest.raises(TurnFailed) as caught:
        _complete(base_url, max_retries=0, timeout_s=0.2)
    assert caught.value.kind == "timeout"
    with pytest.raises(TurnFailed) as caught:
        _complete("http://127.0.0.1:9", max_retries=1)
    assert caught.value.kind == "connection" and caught.value.attempts == 2


def test_the_api_key_is_sent_to_the_server():
    with running_server("429") as (base_url, state):
        _complete(base_url)
    # anthropic 2.x sends an api_key as `Authorization: Bearer`; older releases used `x-api-key`.
    assert state.api_keys == [SECRET, SECRET]
