"""A local provider speaking the OpenAI chat-completions and Anthropic messages APIs (aiohttp),
for tests and benchmarks: real HTTP, real rate limits, lognormal latency and injected faults.

Limits are token buckets refilled continuously (per-minute rate, about a second's burst), the
way providers enforce them per second. Over the limit it answers 429 with `retry-after-ms`,
`retry-after` and `x-ratelimit-*` headers. Replies are deterministic given the request; their
usage reports each API's prompt caching (fakes/prompt_cache.py, fakes/replies.py).
Both batch APIs are served beside the live ones (fakes/batches.py).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import msgspec
from aiohttp import web

from rapport.fakes.batches import FakeBatches
from rapport.fakes.prompt_cache import (
    TooManyBreakpoints,
    anthropic_blocks,
    count_tokens,
    render,
)
from rapport.fakes.replies import (
    Clock,
    FakeReplies,
    anthropic_error,
    last_text,
    openai_prompt,
)


class FakeProviderSettings(msgspec.Struct, frozen=True):
    rpm: int | None = None
    tpm: int | None = None
    burst_s: float = 1.0  # bucket capacity, in seconds of the per-minute rate
    latency_ms: float = 0.0  # median of a lognormal
    latency_sigma: float = 0.25
    reply_tokens: int = 60
    fault_429: float = 0.0  # rates of injected faults, each in [0, 1]
    fault_500: float = 0.0
    fault_hang: float = 0.0
    fault_malformed: float = 0.0
    fault_drop: float = 0.0
    hang_s: float = 30.0
    retry_after_ms: int = 50  # for injected 429s
    rate_limit_first: int = 0  # deterministic faults for tests: the first N requests get 429,
    server_error_first: int = 0  # then the next N get 500,
    malformed_first: int = 0  # then the next N a broken body
    seed: int = 0
    replies: tuple[str, ...] = ()  # canned reply texts, used in turn instead of generated ones
    # where the limits are stated: every response (like OpenAI), only 429s, or nowhere
    limit_headers: Literal["always", "on_429", "never"] = "always"
    slots: int | None = None  # like a local server: requests beyond this many queue
    prompt_cache: bool = True  # emulate each API's prompt caching in its usage fields
    cache_ttl_s: float = 300.0  # a cache entry's lifetime after its last use
    batch_delay_s: float = 0.2  # a batch's items finish this long after it was created
    batch_fail_rate: float = 0.0  # shares of batch items that fail or expire, in [0, 1]
    batch_expire_rate: float = 0.0
    batch_fail_first: int = 0  # deterministic for tests: the first N batch items fail,
    batch_expire_first: int = 0  # then the next N expire


class FakeProviderState(msgspec.Struct):
    requests: int = 0
    completed: int = 0
    rate_limited: int = 0
    injected_429: int = 0
    server_errors: int = 0
    hangs: int = 0
    malformed: int = 0
    dropped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    completed_at: list[float] = msgspec.field(default_factory=list)  # monotonic, for plots
    tokens_at: list[tuple[float, int]] = msgspec.field(default_factory=list)
    authorization: set[str] = msgspec.field(default_factory=set)
    models: set[str] = msgspec.field(default_factory=set)
    prompts: list[str] = msgspec.field(default_factory=list)  # each request's last message
    endpoints: dict[str, int] = msgspec.field(default_factory=dict)  # requests per URL path
    cache_read_tokens: int = 0  # prompt caching, live and batch calls together
    cache_write_tokens: int = 0
    batches_created: int = 0  # batch APIs (fakes/batches.py)
    batch_items: int = 0  # items received, all batches together
    batch_submissions: dict[str, int] = msgspec.field(default_factory=dict)  # per custom_id
    batch_items_succeeded: int = 0
    batch_items_failed: int = 0
    batch_items_expired: int = 0
    batch_items_canceled: int = 0
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    # With `slots`: per request served, (arrived, seconds queued for a slot, seconds in it),
    # monotonic: how long requests waited in the server's queue beside their service time.
    slot_times: list[tuple[float, float, float]] = msgspec.field(default_factory=list)


class TokenBucket:
    """Capacity `per_minute * burst_s / 60`, refilled continuously at `per_minute / 60` per s.

    A request is admitted when the bucket holds its amount (or is full, for a request larger
    than the bucket) and is then charged in full: a large request leaves the bucket in debt,
    which later requests wait out, so every token counts against the per-minute limit.
    """

    def __init__(self, per_minute: int, burst_s: float) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.updated = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        # (level may be negative after a request larger than the bucket: debt is refilled too)
        self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits (0 if it fits now)."""
        self._refill(now)
        amount = min(amount, self.capacity)
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def reset_s(self, now: float) -> float:
        self._refill(now)
        return max(0.0, self.capacity - self.level) / self.rate


class FakeProvider:
    """The request handling; `app()` exposes it over aiohttp."""

    def __init__(
        self,
        settings: FakeProviderSettings,
        state: FakeProviderState | None = None,
        clock: Clock = time.monotonic,  # for cache lifetimes and batch delays
    ):
        self.settings = settings
        self.state = state or FakeProviderState()
        self.clock = clock
        self.replies = FakeReplies(settings, self.state, clock)
        self._rng = random.Random(settings.seed)
        self._requests = TokenBucket(settings.rpm, settings.burst_s) if settings.rpm else None
        self._tokens = TokenBucket(settings.tpm, settings.burst_s) if settings.tpm else None
        self._slots = asyncio.Semaphore(settings.slots) if settings.slots else None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.openai_chat)
        app.router.add_post("/v1/messages", self.anthropic_messages)
        FakeBatches(self).add_routes(app)
        return app

    # ---- the two APIs ----------------------------------------------------------------------

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.state.authorization.add(request.headers.get("Authorization", ""))
        prompt = openai_prompt(body)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 4096)
        model = str(body.get("model", "fake"))

        def success(text: str, prompt_tokens: int, completion_tokens: int) -> web.Response:
            reply = self.replies.openai_completion(
                body, f"chatcmpl-{self.state.requests}", text, prompt, completion_tokens
            )
            return web.json_response(reply, headers=self._success_headers("x-ratelimit"))

        last = (
            str(body.get("messages", [{}])[-1].get("content", "")) if body.get("messages") else ""
        )
        return await self._serve(request, model, prompt, max_tokens, success, "x-ratelimit", last)

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        # The SDK sends the key as `x-api-key` or (anthropic 2.x) as a bearer token.
        key = request.headers.get("x-api-key") or request.headers.get("Authorization", "")
        self.state.authorization.add(key)
        try:
            blocks = anthropic_blocks(body)
        except TooManyBreakpoints as error:
            return web.json_response(
                anthropic_error("invalid_request_error", str(error)), status=400
            )
        prompt = render(blocks)
        model = str(body.get("model", "fake"))

        def success(text: str, prompt_tokens: int, completion_tokens: int) -> web.Response:
            reply = self.replies.anthropic_message(
                body, f"msg_{self.state.requests}", text, blocks, completion_tokens
            )
            return web.json_response(reply, headers=self._success_headers("anthropic-ratelimit"))

        max_tokens = int(body.get("max_tokens") or 4096)
        return await self._serve(
            request, model, prompt, max_tokens, success, "anthropic-ratelimit", last_text(body)
        )

    # ---- shared behaviour ------------------------------------------------------------------

    async def _serve(
        self,
        request: web.Request,
        model: str,
        prompt: str,
        max_tokens: int,
        success: Callable[[str, int, int], web.Response],
        header_prefix: str,
        last_message: str,
    ) -> web.StreamResponse:
        state, settings = self.state, self.settings
        state.requests += 1
        state.endpoints[request.path] = state.endpoints.get(request.path, 0) + 1
        state.models.add(model)
        number = state.requests
        forced = self._forced_fault(number)
        if forced is not None:
            return forced
        prompt_tokens = count_tokens(prompt)
        completion_tokens = min(settings.reply_tokens, max_tokens)
        now = time.monotonic()
        wait = self._limit_wait(prompt_tokens + completion_tokens, now)
        if wait > 0:
            state.rate_limited += 1
            return self._too_many(wait, header_prefix)
        fault = self._random_fault()
        if fault == "429":
            state.injected_429 += 1
            return self._too_many(settings.retry_after_ms / 1000.0, header_prefix)
        self._charge(prompt_tokens + completion_tokens)
        if self._slots is None:
            await asyncio.sleep(self._latency_s())
        else:
            arrived = time.monotonic()
            async with self._slots:  # queued, never refused: a local server's way
                began = time.monotonic()
                await asyncio.sleep(self._latency_s())
                state.slot_times.append((arrived, began - arrived, time.monotonic() - began))
        if fault == "500":
            state.server_errors += 1
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if fault == "hang":
            state.hangs += 1
            await asyncio.sleep(settings.hang_s)
            return web.json_response({"error": {"message": "timed out upstream"}}, status=504)
        if fault == "malformed":
            state.malformed += 1
            return web.Response(
                text='{"id": "broken", "choices": [', content_type="application/json"
            )
        if fault == "drop":
            state.dropped += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        text = self.replies.reply_for(prompt, completion_tokens)
        state.prompts.append(last_message)
        state.completed += 1
        state.prompt_tokens += prompt_tokens
        state.completion_tokens += completion_tokens
        finished = time.monotonic()
        state.completed_at.append(finished)
        state.tokens_at.append((finished, prompt_tokens + completion_tokens))
        return success(text, prompt_tokens, completion_tokens)

    def _forced_fault(self, number: int) -> web.Response | None:
        settings, state = self.settings, self.state
        limit = settings.rate_limit_first
        if number <= limit:
            state.injected_429 += 1
            return self._too_many(settings.retry_after_ms / 1000.0, "x-ratelimit")
        limit += settings.server_error_first
        if number <= limit:
            state.server_errors += 1
            return web.json_response({"error": {"message": "boom"}}, status=500)
        limit += settings.malformed_first
        if number <= limit:
            state.malformed += 1
            return web.Response(
                text='{"id": "broken", "choices": [', content_type="application/json"
            )
        return None

    def _random_fault(self) -> str | None:
        settings = self.settings
        draw = self._rng.random()
        for name, rate in (
            ("429", settings.fault_429),
            ("500", settings.fault_500),
            ("hang", settings.fault_hang),
            ("malformed", settings.fault_malformed),
            ("drop", settings.fault_drop),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None

    def _limit_wait(self, tokens: int, now: float) -> float:
        waits = [0.0]
        if self._requests is not None:
            waits.append(self._requests.wait_for(1, now))
        if self._tokens is not None:
            waits.append(self._tokens.wait_for(tokens, now))
        return max(waits)

    def _charge(self, tokens: int) -> None:
        if self._requests is not None:
            self._requests.take(1)
        if self._tokens is not None:
            self._tokens.take(tokens)

    def _latency_s(self) -> float:
        median = self.settings.latency_ms / 1000.0
        if median <= 0:
            return 0.0
        return median * math.exp(self._rng.gauss(0.0, self.settings.latency_sigma))

    def _success_headers(self, prefix: str) -> dict[str, str]:
        return self._limit_headers(prefix) if self.settings.limit_headers == "always" else {}

    def _too_many(self, wait_s: float, header_prefix: str) -> web.Response:
        never = self.settings.limit_headers == "never"
        headers = {} if never else self._limit_headers(header_prefix)
        headers["retry-after-ms"] = str(max(1, math.ceil(wait_s * 1000)))
        headers["retry-after"] = str(max(1, math.ceil(wait_s)))
        return web.json_response(
            {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
            status=429,
            headers=headers,
        )

    def _limit_headers(self, prefix: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        now = time.monotonic()
        for unit, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            if bucket is None:
                continue
            if prefix == "x-ratelimit":
                headers[f"x-ratelimit-limit-{unit}"] = str(bucket.per_minute)
                headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, int(bucket.level)))
                headers[f"x-ratelimit-reset-{unit}"] = f"{bucket.reset_s(now):.3f}s"
            else:
                headers[f"anthropic-ratelimit-{unit}-limit"] = str(bucket.per_minute)
                headers[f"anthropic-ratelimit-{unit}-remaining"] = str(max(0, int(bucket.level)))
        return headers


@contextmanager
def serving_in_thread(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = 1.0,
) -> Iterator[int]:
    """Serve an aiohttp app on its own event loop in a background thread; yields the bound
    port. Tests and benchmarks drive it with blocking clients from the main thread."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=shutdown_timeout
    )
    bound: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        bound.append(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield bound[0]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@contextmanager
def running_fake_provider(
    settings: FakeProviderSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock = time.monotonic,
) -> Iterator[tuple[str, FakeProviderState]]:
    """Serve on loopback in a background thread; yields (base_url, state)."""
    provider = FakeProvider(settings or FakeProviderSettings(), clock=clock)
    with serving_in_thread(provider.app(), host, port) as bound:
        yield f"http://{host}:{bound}/v1", provider.state


def serve_forever(settings: FakeProviderSettings, host: str, port: int) -> None:
    """Run the provider in the foreground until interrupted (`rapport bench provider`)."""
    provider = FakeProvider(settings)
    web.run_app(
        provider.app(),
        host=host,
        port=port,
        access_log=None,
        print=None,
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )
