"""A local OpenAI-compatible chat-completions server (aiohttp) for tests and benchmarks.

It answers like a real provider over real HTTP: usage figures, rate-limit answers with
Retry-After, and injectable faults. Replies are deterministic given the request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from aiohttp import web

from engine.seeding import derive_seed


class FakeProviderSettings(msgspec.Struct, frozen=True):
    latency_ms: float = 0.0
    rate_limit_first: int = 0  # answer 429 to the first N requests
    retry_after_ms: int = 50
    server_error_first: int = 0  # then answer 500 to the next N
    malformed_first: int = 0  # then answer a broken JSON body to the next N
    reply_words: int = 24


class FakeProviderState(msgspec.Struct):
    requests: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    malformed: int = 0
    completed: int = 0
    authorization: set[str] = msgspec.field(default_factory=set)
    models: set[str] = msgspec.field(default_factory=set)


_WORDS = (  # noqa: SIM905
    "that sounds heavy and I hear how much it matters to you today so let us take one small "
    "step together and see what changes when you try it for a few days this week"
).split()


def reply_text(messages: list[dict[str, str]], words: int) -> str:
    """A deterministic reply that depends on the conversation so far."""
    last = messages[-1]["content"] if messages else ""
    rng_seed = derive_seed(len(messages), last)
    picked = [_WORDS[(rng_seed >> (i % 48)) % len(_WORDS)] for i in range(words)]
    return " ".join(picked).capitalize() + "."


def create_app(settings: FakeProviderSettings, state: FakeProviderState) -> web.Application:
    async def chat_completions(request: web.Request) -> web.Response:
        state.requests += 1
        number = state.requests
        state.authorization.add(request.headers.get("Authorization", ""))
        body = await request.json()
        state.models.add(body.get("model", ""))
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000.0)
        limit = settings.rate_limit_first
        if number <= limit:
            state.rate_limited += 1
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}},
                status=429,
                headers={"retry-after-ms": str(settings.retry_after_ms)},
            )
        limit += settings.server_error_first
        if number <= limit:
            state.server_errors += 1
            return web.json_response(
                {"error": {"message": "boom", "type": "server_error"}}, status=500
            )
        limit += settings.malformed_first
        if number <= limit:
            state.malformed += 1
            return web.Response(
                text='{"id": "broken", "choices": [', content_type="application/json"
            )
        messages = body.get("messages", [])
        text = reply_text(messages, settings.reply_words)
        prompt_tokens = sum(len(m.get("content", "").split()) for m in messages)
        state.completed += 1
        return web.json_response(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": settings.reply_words,
                    "total_tokens": prompt_tokens + settings.reply_words,
                },
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    return app


@contextmanager
def running_fake_provider(
    settings: FakeProviderSettings | None = None, host: str = "127.0.0.1"
) -> Iterator[tuple[str, FakeProviderState]]:
    """Serve on a free loopback port in a background thread; yields (base_url, state)."""
    state = FakeProviderState()
    app = create_app(settings or FakeProviderSettings(), state)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()
    port: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    started.wait(timeout=10)
    try:
        yield f"http://{host}:{port[0]}/v1", state
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
