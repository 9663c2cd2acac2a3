"""A tiny loopback server speaking OpenAI chat completions and Anthropic messages, with a prompt
cache of its own: a request whose prompt extends the previous prompt of the same stream (OpenAI:
its `prompt_cache_key`; Anthropic: its system prompt and first message, when `cache_control` is set) reports the
earlier prompt's tokens as cached, in each API's usage fields. A prompt that is not a strict
extension reads nothing, so cache reads show that prompts really are prefix-stable. Tokens are
words. Every request body is kept for the tests to inspect.

Kept apart from fakes/provider.py (which emulates each API's documented caching rules):
this one answers exactly, so tests can assert exact counts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

CACHE_KEY_REFUSAL = "Unrecognized request argument supplied: prompt_cache_key"


@dataclass
class CacheServerState:
    openai_bodies: list[dict] = field(default_factory=list)
    anthropic_bodies: list[dict] = field(default_factory=list)
    refuse_cache_key: bool = False  # answer 400 naming `prompt_cache_key` to any request with it
    usage: dict | None = None  # when set, the usage every answer reports (else emulated)
    # stream -> the previous prompt of that stream, as (role, text) pairs
    previous: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    counter: int = 0

    def cached(self, stream: str | None, prompt: list[tuple[str, str]]) -> int:
        """Tokens of the previous prompt of `stream` when `prompt` extends it; it becomes the
        stream's previous prompt."""
        if stream is None:
            return 0
        before = self.previous.get(stream)
        self.previous[stream] = prompt
        if before is None or prompt[: len(before)] != before:
            return 0
        return words(before)


def words(prompt: list[tuple[str, str]]) -> int:
    return sum(len(text.split()) for _, text in prompt)


def text_of(content: str | list[dict]) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def _openai_app(state: CacheServerState, app: web.Application) -> None:
    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        state.openai_bodies.append(body)
        if state.refuse_cache_key and "prompt_cache_key" in body:
            error = {"message": CACHE_KEY_REFUSAL, "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        prompt = [(m["role"], text_of(m["content"])) for m in body["messages"]]
        state.counter += 1
        total = words(prompt)
        usage = state.usage or {
            "prompt_tokens": total,
            "completion_tokens": 5,
            "total_tokens": total + 5,
            "prompt_tokens_details": {
                "cached_tokens": state.cached(body.get("prompt_cache_key"), prompt)
            },
        }
        return web.json_response(
            {
                "id": f"chatcmpl-{state.counter}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": _reply(state.counter)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    app.router.add_post("/v1/chat/completions", completions)


def _anthropic_app(state: CacheServerState, app: web.Application) -> None:
    async def messages(request: web.Request) -> web.Response:
        body = await request.json()
        state.anthropic_bodies.append(body)
        system = body.get("system")
        system_text = text_of(system) if system is not None else ""
        prompt = [("system", system_text)]
        prompt += [(m["role"], text_of(m["content"])) for m in body["messages"]]
        hinted = "cache_control" in repr(body)
        state.counter += 1
        total = words(prompt)
        stream = repr(prompt[:2])  # a conversation's role: its system prompt and first message
        read = state.cached(stream, prompt) if hinted else 0
        write = total - read if hinted else 0  # the breakpoint is at the end of the prompt
        usage = state.usage or {
            "input_tokens": total - read - write,
            "output_tokens": 5,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
        }
        return web.json_response(
            {
                "id": f"msg_{state.counter}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": _reply(state.counter)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
        )

    app.router.add_post("/v1/messages", messages)


def _reply(counter: int) -> str:
    return f"Reply number {counter}, with a few words to count."


@contextmanager
def cache_server(state: CacheServerState | None = None) -> Iterator[tuple[str, CacheServerState]]:
    """Serve both APIs on a free loopback port in a background thread; yields (url, state)."""
    state = state or CacheServerState()
    app = web.Application()
    _openai_app(state, app)
    _anthropic_app(state, app)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
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
