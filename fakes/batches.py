"""The OpenAI Batch API (files + batches) and Anthropic Message Batches on the fake provider,
shaped as the official SDKs expect them, so batch judging is tested over real HTTP.

Items are answered with the live reply logic and usage (prompt caching included), but without
the live rate limits or injected faults: all of a batch's items are answered when it is first
looked at `batch_delay_s` after its creation. A share of items fails or expires
(`batch_fail_rate`, `batch_expire_rate`, drawn from the seed, the batch's number and the
custom_id, so a resubmitted item gets a fresh draw), or the first N items received do
(`batch_fail_first`, `batch_expire_first`). File and batch ids are random, so a restarted
provider never hands out an id it gave before. Counters on the provider's state let tests see how
many batches and items arrived, per custom_id.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from aiohttp import web

from rapport.engine.seeding import derive_seed, short_hash

if TYPE_CHECKING:
    from rapport.fakes.provider import FakeProvider

CHAT_ENDPOINT = "/v1/chat/completions"
WINDOW_S = 24 * 3600
FILE_PURPOSES = frozenset(
    {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
)  # what a client may upload
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."

Fate = Literal["ok", "fail", "expire"]


class FakeFile(msgspec.Struct):
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


class BatchItem(msgspec.Struct):
    custom_id: str
    body: dict[str, Any]


class Batch(msgspec.Struct):
    """One batch of either API; `status` uses OpenAI's words, Anthropic's view maps them."""

    id: str
    api: Literal["openai", "anthropic"]
    number: int  # order of creation, for the fate draws
    items: list[BatchItem]
    created_at: float  # wall clock, for the timestamps
    started: float  # the provider's clock, for the delay
    metadata: dict[str, Any] | None = None
    input_file_id: str = ""
    status: str = "validating"
    errors: list[dict[str, Any]] | None = None
    cancel_requested: float | None = None  # wall clock
    ended_at: float | None = None  # wall clock
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: list[dict[str, Any]] = msgspec.field(default_factory=list)  # Anthropic lines
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    canceled: int = 0
    usage: dict[str, Any] = msgspec.field(default_factory=dict)


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status)


def anthropic_error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status)


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class FakeBatches:
    """Files and batches of both APIs, held in memory for the provider's lifetime."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, Batch] = {}
        self._items_seen = 0

    def add_routes(self, app: web.Application) -> None:
        routes = app.router
        routes.add_post("/v1/files", self.create_file)
        routes.add_get("/v1/files/{file_id}", self.get_file)
        routes.add_get("/v1/files/{file_id}/content", self.get_file_content)
        routes.add_delete("/v1/files/{file_id}", self.delete_file)
        routes.add_post("/v1/batches", self.create_openai)
        routes.add_get("/v1/batches", self.list_openai)
        routes.add_get("/v1/batches/{batch_id}", self.get_openai)
        routes.add_post("/v1/batches/{batch_id}/cancel", self.cancel_openai)
        routes.add_post("/v1/messages/batches", self.create_anthropic)
        routes.add_get("/v1/messages/batches", self.list_anthropic)
        routes.add_get("/v1/messages/batches/{batch_id}", self.get_anthropic)
        routes.add_get("/v1/messages/batches/{batch_id}/results", self.results_anthropic)
        routes.add_post("/v1/messages/batches/{batch_id}/cancel", self.cancel_anthropic)
        routes.add_delete("/v1/messages/batches/{batch_id}", self.delete_anthropic)

    # ---- OpenAI files ----------------------------------------------------------------------

    async def create_file(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), str(form.get("purpose", ""))
        if not isinstance(upload, web.FileField):
            return openai_error(400, "Missing file.")
        if purpose not in FILE_PURPOSES:
            return openai_error(400, f"Invalid purpose: {purpose!r}.")
        content = upload.file.read()
        file = self._add_file(upload.filename or "upload.jsonl", purpose, content)
        return web.json_response(file.view())

    def _add_file(self, filename: str, purpose: str, content: bytes) -> FakeFile:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        file = FakeFile(file_id, filename, purpose, content, int(time.time()))
        self.files[file_id] = file
        return file

    async def get_file(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return openai_error(404, f"No such File object: {request.match_info['file_id']}")
        return web.json_response(file.view())

    async def get_file_content(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return openai_error(404, f"No such File object: {request.match_info['file_id']}")
        return web.Response(body=file.content, content_type="application/octet-stream")

    async def delete_file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if self.files.pop(file_id, None) is None:
            return openai_error(404, f"No such File object: {file_id}")
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    # ---- OpenAI batches --------------------------------------------------------------------

    async def create_openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        file = self.files.get(str(body.get("input_file_id", "")))
        endpoint = body.get("endpoint")
        if file is None:
            return openai_error(400, f"Invalid 'input_file_id': {body.get('input_file_id')!r}.")
        if endpoint != CHAT_ENDPOINT:
            return openai_error(400, f"Unsupported endpoint {endpoint!r} (only {CHAT_ENDPOINT}).")
        if body.get("completion_window") != "24h":
            return openai_error(400, "Invalid 'completion_window': only '24h' is supported.")
        items, errors = _parse_input(file.content)
        batch = self._new_batch("openai", items, body.get("metadata"))
        batch.input_file_id = file.id
        if errors:
            batch.status, batch.errors, batch.ended_at = "failed", errors, time.time()
        return web.json_response(self._openai_view(batch))

    async def get_openai(self, request: web.Request) -> web.Response:
        batch = self._find(request, "openai")
        if batch is None:
            return openai_error(404, f"No batch found with id '{request.match_info['batch_id']}'.")
        self._advance(batch)
        return web.json_response(self._openai_view(batch))

    async def list_openai(self, request: web.Request) -> web.Response:
        batches = [b for b in reversed(self.batches.values()) if b.api == "openai"]
        page = _page(batches, request.query.get("after"), request.query.get("limit"))
        for batch in page:
            self._advance(batch)
        views = [self._openai_view(b) for b in page]
        return web.json_response(
            {
                "object": "list",
                "data": views,
                "first_id": views[0]["id"] if views else None,
                "last_id": views[-1]["id"] if views else None,
                "has_more": bool(page) and page[-1] is not batches[-1],
            }
        )

    async def cancel_openai(self, request: web.Request) -> web.Response:
        batch = self._find(request, "openai")
        if batch is None:
            return openai_error(404, f"No batch found with id '{request.match_info['batch_id']}'.")
        self._advance(batch)
        if batch.status not in ("validating", "in_progress", "finalizing", "cancelling"):
            return openai_error(409, f"Cannot cancel a batch with status '{batch.status}'.")
        if batch.cancel_requested is None:
            batch.cancel_requested = time.time()
            batch.status = "cancelling"
        return web.json_response(self._openai_view(batch))

    def _openai_view(self, batch: Batch) -> dict[str, Any]:
        created = int(batch.created_at)
        ended = batch.ended_at is not None
        status = batch.status
        moved = status not in ("validating", "failed")
        total = len(batch.items)
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": CHAT_ENDPOINT,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": created,
            "in_progress_at": created if moved else None,
            "expires_at": created + WINDOW_S,
            "finalizing_at": _int(batch.ended_at) if status in ("completed", "expired") else None,
            "completed_at": _int(batch.ended_at) if status == "completed" else None,
            "failed_at": _int(batch.ended_at) if status == "failed" else None,
            "expired_at": _int(batch.ended_at) if status == "expired" else None,
            "cancelling_at": _int(batch.cancel_requested),
            "cancelled_at": _int(batch.ended_at) if status == "cancelled" else None,
            "request_counts": {
                "total": total if status != "failed" else 0,
                "completed": batch.succeeded,
                "failed": batch.errored + batch.expired if ended else 0,
            },
            "metadata": batch.metadata,
            "usage": batch.usage or None,
        }

    # ---- Anthropic message batches ---------------------------------------------------------

    async def create_anthropic(self, request: web.Request) -> web.Response:
        body = await request.json()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return anthropic_error(400, "requests: a non-empty list is required")
        seen: set[str] = set()
        items: list[BatchItem] = []
        for index, entry in enumerate(requests):
            custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
            params = entry.get("params") if isinstance(entry, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                return anthropic_error(400, f"requests.{index}.custom_id: invalid")
            if custom_id in seen:
                return anthropic_error(400, f"Duplicate custom_id {custom_id!r} in batch.")
            if not isinstance(params, dict) or "messages" not in params:
                return anthropic_error(400, f"requests.{index}.params: messages is required")
            seen.add(custom_id)
            items.append(BatchItem(custom_id, params))
        batch = self._new_batch("anthropic", items, None)
        batch.status = "in_progress"
        return web.json_response(self._anthropic_view(batch, request))

    async def get_anthropic(self, request: web.Request) -> web.Response:
        batch = self._find(request, "anthropic")
        if batch is None:
            return self._anthropic_missing(request)
        self._advance(batch)
        return web.json_response(self._anthropic_view(batch, request))

    async def list_anthropic(self, request: web.Request) -> web.Response:
        batches = [b for b in reversed(self.batches.values()) if b.api == "anthropic"]
        page = _page(batches, request.query.get("after_id"), request.query.get("limit"))
        for batch in page:
            self._advance(batch)
        views = [self._anthropic_view(b, request) for b in page]
        return web.json_response(
            {
                "data": views,
                "first_id": views[0]["id"] if views else None,
                "last_id": views[-1]["id"] if views else None,
                "has_more": bool(page) and page[-1] is not batches[-1],
            }
        )

    async def results_anthropic(self, request: web.Request) -> web.Response:
        batch = self._find(request, "anthropic")
        if batch is None:
            return self._anthropic_missing(request)
        self._advance(batch)
        if batch.ended_at is None:
            return anthropic_error(400, f"Batch {batch.id} is still processing.")
        lines = "".join(json.dumps(line) + "\n" for line in batch.results)
        return web.Response(text=lines, content_type="application/x-jsonl")

    async def cancel_anthropic(self, request: web.Request) -> web.Response:
        batch = self._find(request, "anthropic")
        if batch is None:
            return self._anthropic_missing(request)
        self._advance(batch)
        if batch.ended_at is None and batch.cancel_requested is None:
            batch.cancel_requested = time.time()
            batch.status = "cancelling"
        return web.json_response(self._anthropic_view(batch, request))

    async def delete_anthropic(self, request: web.Request) -> web.Response:
        batch = self._find(request, "anthropic")
        if batch is None:
            return self._anthropic_missing(request)
        self._advance(batch)
        if batch.ended_at is None:
            return anthropic_error(400, f"Batch {batch.id} is still processing; cancel it first.")
        del self.batches[batch.id]
        return web.json_response({"id": batch.id, "type": "message_batch_deleted"})

    def _anthropic_missing(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["batch_id"]
        return anthropic_error(404, f"Message batch {batch_id} not found.", "not_found_error")

    def _anthropic_view(self, batch: Batch, request: web.Request) -> dict[str, Any]:
        ended = batch.ended_at is not None
        processing = 0 if ended else len(batch.items)
        results_url = None
        if ended:
            results_url = f"{request.url.origin()}/v1/messages/batches/{batch.id}/results"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": (
                "ended" if ended else "canceling" if batch.cancel_requested else "in_progress"
            ),
            "request_counts": {
                "processing": processing,
                "succeeded": batch.succeeded,
                "errored": batch.errored,
                "canceled": batch.canceled,
                "expired": batch.expired,
            },
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + WINDOW_S),
            "ended_at": _rfc3339(batch.ended_at),
            "cancel_initiated_at": _rfc3339(batch.cancel_requested),
            "archived_at": None,
            "results_url": results_url,
        }

    # ---- both ------------------------------------------------------------------------------

    def _new_batch(
        self, api: Literal["openai", "anthropic"], items: list[BatchItem], metadata: Any
    ) -> Batch:
        state = self.provider.state
        state.batches_created += 1
        state.batch_items += len(items)
        for item in items:
            state.batch_submissions[item.custom_id] = (
                state.batch_submissions.get(item.custom_id, 0) + 1
            )
        number = state.batches_created
        suffix = uuid.uuid4().hex[:24]  # unique across provider restarts, as the APIs' ids are
        batch_id = f"batch_{suffix}" if api == "openai" else f"msgbatch_{suffix}"
        batch = Batch(
            id=batch_id,
            api=api,
            number=number,
            items=items,
            created_at=time.time(),
            started=self.provider.clock(),
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        self.batches[batch_id] = batch
        return batch

    def _find(self, request: web.Request, api: str) -> Batch | None:
        batch = self.batches.get(request.match_info["batch_id"])
        return batch if batch is not None and batch.api == api else None

    def _advance(self, batch: Batch) -> None:
        """Move a batch on by the provider's clock; answer its items once the delay is over."""
        if batch.ended_at is not None:
            return
        if batch.cancel_requested is not None:
            self._cancel(batch)
            return
        delay = self.provider.settings.batch_delay_s
        elapsed = self.provider.clock() - batch.started
        if elapsed >= delay:
            self._finish(batch)
        elif batch.api == "openai":
            batch.status = "finalizing" if elapsed >= 0.9 * delay else "in_progress"

    def _cancel(self, batch: Batch) -> None:
        state = self.provider.state
        batch.status, batch.ended_at = "cancelled", time.time()
        batch.canceled = len(batch.items)
        state.batch_items_canceled += len(batch.items)
        batch.results = [
            {"custom_id": item.custom_id, "result": {"type": "canceled"}} for item in batch.items
        ]

    def _fate(self, batch: Batch, custom_id: str) -> Fate:
        settings = self.provider.settings
        self._items_seen += 1
        if self._items_seen <= settings.batch_fail_first:
            return "fail"
        if self._items_seen <= settings.batch_fail_first + settings.batch_expire_first:
            return "expire"
        draw = random.Random(derive_seed(settings.seed, "batch", batch.number, custom_id)).random()
        if draw < settings.batch_fail_rate:
            return "fail"
        if draw < settings.batch_fail_rate + settings.batch_expire_rate:
            return "expire"
        return "ok"

    def _finish(self, batch: Batch) -> None:
        state = self.provider.state
        output: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        usage = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0}
        for index, item in enumerate(batch.items):
            fate = self._fate(batch, item.custom_id)
            request_id = f"req_{short_hash(batch.id, index, length=24)}"
            if fate == "expire":
                batch.expired += 1
                state.batch_items_expired += 1
                failed.append(_openai_expired(item, batch))
                batch.results.append({"custom_id": item.custom_id, "result": {"type": "expired"}})
                continue
            if fate == "fail":
                status, body = 500, _server_error(batch.api)
            elif batch.api == "openai":
                status, body = self.provider.replies.answer_openai(
                    item.body, f"chatcmpl-{request_id}"
                )
            else:
                status, body = self.provider.replies.answer_anthropic(
                    item.body, f"msg_{request_id}"
                )
            if status == 200:
                batch.succeeded += 1
                state.batch_items_succeeded += 1
                _add_usage(usage, batch.api, body["usage"])
                result: dict[str, Any] = {"type": "succeeded", "message": body}
            else:
                batch.errored += 1
                state.batch_items_failed += 1
                result = {"type": "errored", "error": {**body, "request_id": request_id}}
            line = {
                "id": f"batch_req_{short_hash(batch.id, item.custom_id, length=24)}",
                "custom_id": item.custom_id,
                "response": {"status_code": status, "request_id": request_id, "body": body},
                "error": None,
            }
            (output if status == 200 else failed).append(line)
            batch.results.append({"custom_id": item.custom_id, "result": result})
        batch.ended_at = time.time()
        batch.status = "expired" if batch.expired else "completed"
        if batch.api == "openai":
            batch.output_file_id = self._jsonl_file(batch, "output", output)
            batch.error_file_id = self._jsonl_file(batch, "error", failed)
            batch.usage = {
                "input_tokens": usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": usage["cached_tokens"]},
                "output_tokens": usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            }

    def _jsonl_file(self, batch: Batch, kind: str, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return self._add_file(f"{batch.id}_{kind}.jsonl", "batch_output", content).id


def _parse_input(content: bytes) -> tuple[list[BatchItem], list[dict[str, Any]]]:
    """The input file's requests, or the errors that fail the batch (as the API lists them)."""
    items: list[BatchItem] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        if not raw.strip():
            continue

        def error(code: str, message: str, param: str | None = None, line: int = number) -> None:
            errors.append({"code": code, "message": message, "param": param, "line": line})

        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            error("invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            error("missing_required_parameter", "Missing custom_id.", "custom_id")
        elif custom_id in seen:
            error("duplicate_custom_id", f"The custom_id {custom_id!r} is not unique.", "custom_id")
        elif entry.get("method") != "POST" or entry.get("url") != CHAT_ENDPOINT:
            error("invalid_url", f"Only POST {CHAT_ENDPOINT} is supported.", "url")
        elif not isinstance(entry.get("body"), dict):
            error("missing_required_parameter", "Missing body.", "body")
        else:
            seen.add(custom_id)
            items.append(BatchItem(custom_id, entry["body"]))
    if not items and not errors:
        errors.append({"code": "empty_file", "message": "The input file is empty.", "line": None})
    return items, errors


def _openai_expired(item: BatchItem, batch: Batch) -> dict[str, Any]:
    return {
        "id": f"batch_req_{short_hash(batch.id, item.custom_id, length=24)}",
        "custom_id": item.custom_id,
        "response": None,
        "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE},
    }


def _server_error(api: str) -> dict[str, Any]:
    if api == "openai":
        message = "The server had an error while processing your request. Sorry about that!"
        return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}


def _add_usage(total: dict[str, int], api: str, usage: dict[str, Any]) -> None:
    if api == "openai":
        total["input_tokens"] += usage["prompt_tokens"]
        total["cached_tokens"] += usage["prompt_tokens_details"]["cached_tokens"]
    total["output_tokens"] += usage.get("completion_tokens", usage.get("output_tokens", 0))


def _page(batches: list[Batch], after: str | None, limit: str | None) -> list[Batch]:
    start = 0
    if after:
        ids = [b.id for b in batches]
        start = ids.index(after) + 1 if after in ids else len(batches)
    size = max(1, min(100, int(limit))) if limit and limit.isdigit() else 20
    return batches[start : start + size]


def _int(epoch: float | None) -> int | None:
    return None if epoch is None else int(epoch)
