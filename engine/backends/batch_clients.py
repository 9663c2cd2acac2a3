"""The two batch APIs through their official SDKs (engine/batch_api.py says what a batch
client does): OpenAI's files + `/v1/batches` with its output and error files, and Anthropic's
Message Batches. Request bodies and replies go through the live backends' own builder and
reader, so a batch item is exactly the live call it replaces."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import anthropic
import openai

from rapport.engine.backends.http_errors import short_message, translate_sdk_error
from rapport.engine.batch_api import BatchRequest, BatchState, ItemResult, ItemStatus
from rapport.engine.errors import BackendError
from rapport.engine.types import CompletionParams

OPENAI_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
UNKNOWN = CompletionParams(max_tokens=1, temperature=0.0)  # an item's request not at hand


def batch_call_error(error: Exception, sdk: Any) -> BackendError:
    """An SDK error of a batch call (upload, create, poll, results) as a BackendError."""
    translated = translate_sdk_error(error, sdk)
    if translated is not None:
        return translated
    return BackendError("batch", short_message(str(error)), retryable=False)


class OpenAIBatches:
    """Files and batches of an OpenAI-compatible server."""

    provider = "openai"

    def __init__(self, backend: Any) -> None:
        from rapport.engine.backends.openai_backend import chat_request, completion_of

        self._client: openai.AsyncOpenAI = backend.client
        self._ladder = backend.structured_output
        self._chat_request = chat_request
        self._completion_of = completion_of
        self.model: str = backend.model

    def body(self, request: BatchRequest) -> dict[str, object]:
        """The chat completion body, in the structured output mode the live path uses now."""
        mode = self._ladder.mode if request.params.json_schema is not None else None
        return self._chat_request(
            self.model, request.messages, request.params, mode, request.params.cache_key
        )

    async def submit(self, requests: Sequence[BatchRequest]) -> str:
        lines = "".join(
            json.dumps(
                {
                    "custom_id": r.custom_id,
                    "method": "POST",
                    "url": OPENAI_ENDPOINT,
                    "body": self.body(r),
                }
            )
            + "\n"
            for r in requests
        )
        try:
            upload = await self._client.files.create(
                file=("rapport-judge.jsonl", io.BytesIO(lines.encode())), purpose="batch"
            )
            batch = await self._client.batches.create(
                input_file_id=upload.id,
                endpoint=OPENAI_ENDPOINT,
                completion_window=COMPLETION_WINDOW,
                metadata={"source": "rapport judge"},
            )
        except openai.OpenAIError as error:
            raise batch_call_error(error, openai) from error
        return batch.id

    async def state(self, batch_id: str) -> BatchState:
        try:
            batch = await self._client.batches.retrieve(batch_id)
        except openai.OpenAIError as error:
            raise batch_call_error(error, openai) from error
        counts = batch.request_counts
        ended = batch.status in ("completed", "failed", "expired", "cancelled")
        return BatchState(
            batch.status,
            ended,
            counts.total if counts else 0,
            counts.completed if counts else 0,
            counts.failed if counts else 0,
        )

    async def results(
        self, batch_id: str, custom_ids: Sequence[str], requests: Mapping[str, BatchRequest]
    ) -> list[ItemResult]:
        try:
            batch = await self._client.batches.retrieve(batch_id)
            lines = [
                *await self._lines(batch.output_file_id),
                *await self._lines(batch.error_file_id),
            ]
        except openai.OpenAIError as error:
            raise batch_call_error(error, openai) from error
        found = {line.get("custom_id"): line for line in lines if isinstance(line, dict)}
        listed = (batch.errors.data or []) if batch.errors else []
        whole = "; ".join(e.message or e.code or "" for e in listed)  # a batch that failed whole
        return [
            self._result(
                custom_id, found.get(custom_id), requests.get(custom_id), batch.status, whole
            )
            for custom_id in custom_ids
        ]

    async def _lines(self, file_id: str | None) -> list[Any]:
        if not file_id:
            return []
        content = await self._client.files.content(file_id)
        return [json.loads(line) for line in content.text.splitlines() if line.strip()]

    def _result(
        self,
        custom_id: str,
        line: Mapping[str, Any] | None,
        request: BatchRequest | None,
        batch_status: str,
        batch_error: str,
    ) -> ItemResult:
        if line is None:
            status: ItemStatus = "expired" if batch_status == "expired" else "failed"
            why = batch_error or f"not in the results of a batch that ended {batch_status}"
            if batch_status == "cancelled":
                status = "canceled"
            return ItemResult(custom_id, status, error=why)
        error = line.get("error")
        response = line.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        if error:
            code = str(error.get("code") or "error")
            status = "expired" if code == "batch_expired" else "failed"
            return ItemResult(custom_id, status, error=f"{code}: {error.get('message', '')}")
        if response.get("status_code") != 200 or not isinstance(body, dict):
            message = (body or {}).get("error", {}).get("message", "") if body else ""
            return ItemResult(
                custom_id, "failed", error=f"http_{response.get('status_code')}: {message}"
            )
        try:
            completion = self._completion_of(
                openai.types.chat.ChatCompletion.model_validate(body),
                self.body(request) if request is not None else {},
                self.model,
                0.0,
            )
        except BackendError as failure:
            return ItemResult(custom_id, "failed", error=f"{failure.kind}: {failure}")
        except ValueError as failure:  # not a chat completion
            return ItemResult(
                custom_id, "failed", error=f"malformed: {short_message(str(failure))}"
            )
        return ItemResult(custom_id, "answered", completion)


class AnthropicBatches:
    """Message Batches of the Anthropic API."""

    provider = "anthropic"

    def __init__(self, backend: Any) -> None:
        from rapport.engine.backends.anthropic_backend import completion_of, message_request

        self._client: anthropic.AsyncAnthropic = backend.client
        self._message_request = message_request
        self._completion_of = completion_of
        self.model: str = backend.model

    async def submit(self, requests: Sequence[BatchRequest]) -> str:
        entries = [
            {
                "custom_id": r.custom_id,
                "params": self._message_request(self.model, r.messages, r.params),
            }
            for r in requests
        ]
        try:
            batch = await self._client.messages.batches.create(requests=entries)  # type: ignore[arg-type]
        except anthropic.AnthropicError as error:
            raise batch_call_error(error, anthropic) from error
        return batch.id

    async def state(self, batch_id: str) -> BatchState:
        try:
            batch = await self._client.messages.batches.retrieve(batch_id)
        except anthropic.AnthropicError as error:
            raise batch_call_error(error, anthropic) from error
        counts = batch.request_counts
        failed = counts.errored + counts.expired + counts.canceled
        return BatchState(
            batch.processing_status,
            batch.processing_status == "ended",
            counts.processing + counts.succeeded + failed,
            counts.succeeded,
            failed,
        )

    async def results(
        self, batch_id: str, custom_ids: Sequence[str], requests: Mapping[str, BatchRequest]
    ) -> list[ItemResult]:
        found: dict[str, Any] = {}
        try:
            async for entry in await self._client.messages.batches.results(batch_id):
                found[entry.custom_id] = entry.result
        except anthropic.AnthropicError as error:
            raise batch_call_error(error, anthropic) from error
        return [
            self._result(custom_id, found.get(custom_id), requests.get(custom_id))
            for custom_id in custom_ids
        ]

    def _result(self, custom_id: str, result: Any, request: BatchRequest | None) -> ItemResult:
        kind = getattr(result, "type", None)
        if kind == "succeeded":
            messages, params = (
                (request.messages, request.params) if request is not None else ((), UNKNOWN)
            )
            try:
                completion = self._completion_of(result.message, messages, params, self.model, 0.0)
            except BackendError as failure:
                return ItemResult(custom_id, "failed", error=f"{failure.kind}: {failure}")
            return ItemResult(custom_id, "answered", completion)
        if kind == "errored":
            inner = getattr(getattr(result, "error", None), "error", None)
            message = getattr(inner, "message", "") or "errored"
            return ItemResult(
                custom_id, "failed", error=f"{getattr(inner, 'type', 'error')}: {message}"
            )
        if kind in ("expired", "canceled"):
            return ItemResult(custom_id, kind, error=f"batch item {kind}")
        return ItemResult(custom_id, "failed", error="not in the batch's results")
