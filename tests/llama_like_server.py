"""An OpenAI-compatible server on loopback (aiohttp) that behaves like the servers Rapport meets
in practice, for the structured-output and truncation tests: it may refuse `response_format`
types the way llama-cpp-python's server does (HTTP 500 naming `response_format`), cuts replies
at `max_tokens` with `finish_reason: length`, and may hang from a given request on. Judge
replies are valid JSON for the schema it was given (in `response_format` or in the prompt)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from aiohttp import web

from rapport.fakes.provider import serving_in_thread

WORD = "steady "  # 7 characters: about 2 tokens at 4 characters per token
SCHEMA_MARKER = "matching this JSON schema: "
REFUSAL = (
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
    "  Input should be 'text' or 'json_object' [type=literal_error, input_value='{kind}']"
)


class ServerSettings(msgspec.Struct, frozen=True):
    accepts: frozenset[str] = frozenset({"json_schema", "json_object"})  # response_format types
    reply_tokens: int = 20  # a reply longer than max_tokens is cut: finish_reason `length`
    hang_from: int | None = None  # requests from this number (1-based) on never answer
    invalid_from: int | None = None  # ...or answer a 500 saying the request is invalid


class Seen(msgspec.Struct, frozen=True):
    """One request as received: its structured-output type (None: none) and budget."""

    model: str
    format_type: str | None
    has_schema: bool
    max_tokens: int
    instruction: bool  # the JSON schema was asked for in the prompt instead


class ServerLog(msgspec.Struct):
    requests: list[Seen] = msgspec.field(default_factory=list)

    def formats(self) -> list[str | None]:
        return [seen.format_type for seen in self.requests]


def _schema_in(body: dict) -> tuple[dict | None, bool]:
    """The JSON schema asked for, and whether it came as a prompt instruction."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"], False
    if "schema" in response_format:
        return response_format["schema"], False
    for message in body.get("messages", []):
        content = str(message.get("content", ""))
        if SCHEMA_MARKER in content:
            return json.loads(content.split(SCHEMA_MARKER, 1)[1]), True
    return None, False


def _answer_for(schema: dict) -> str:
    """A valid answer for a judge schema: one criterion, or every batched one."""
    if "verdicts" in schema.get("properties", {}):
        items = schema["properties"]["verdicts"]["prefixItems"]
        verdicts = [
            {
                "criterion_id": item["properties"]["criterion_id"]["const"],
                "reasoning": "exchange 1 shows it",
                "answer": "YES",
            }
            for item in items
        ]
        return json.dumps({"verdicts": verdicts})
    return json.dumps({"reasoning": "exchange 1 shows it", "answer": "YES"})


def _app(settings: ServerSettings, log: ServerLog) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        number = len(log.requests) + 1
        response_format = body.get("response_format")
        format_type = response_format.get("type") if response_format else None
        schema, instruction = _schema_in(body)
        max_tokens = int(body.get("max_tokens") or 4096)
        log.requests.append(
            Seen(str(body.get("model")), format_type, bool(response_format and "schema" in str(response_format)),
                 max_tokens, instruction)
        )  # fmt: skip
        if settings.hang_from is not None and number >= settings.hang_from:
            await asyncio.sleep(3600)
        if settings.invalid_from is not None and number >= settings.invalid_from:
            message = "1 validation error for CreateChatCompletionRequest\nmessages: Field required"
            return web.json_response(
                {"error": {"message": message, "type": "internal_server_error"}}, status=500
            )
        if format_type is not None and format_type not in settings.accepts:
            return web.json_response(
                {
                    "error": {
                        "message": REFUSAL.format(kind=format_type),
                        "type": "internal_server_error",
                    }
                },
                status=500,
            )
        if schema is not None:
            text, finish = _answer_for(schema), "stop"
        else:
            words = settings.reply_tokens // 2
            allowed = max(1, max_tokens // 2)
            text = (WORD * min(words, allowed)).strip() + ("." if words <= allowed else "")
            finish = "stop" if words <= allowed else "length"
        return web.json_response(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model", "llama-like")),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@contextmanager
def llama_like_server(settings: ServerSettings | None = None) -> Iterator[tuple[str, ServerLog]]:
    """Serve on loopback in a background thread; yields (base_url, log of requests)."""
    log = ServerLog()
    app = _app(settings or ServerSettings(), log)
    with serving_in_thread(app, shutdown_timeout=0.5) as port:
        yield f"http://127.0.0.1:{port}/v1", log
