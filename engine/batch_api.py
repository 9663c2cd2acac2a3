"""The providers' batch APIs through their official SDKs: OpenAI's Batch API (a JSONL file of
chat completion requests, `/v1/batches`, an output and an error file) and Anthropic's Message
Batches. Each request body is built by the backend's own builder, and each reply read by its
own reader, so a batch item is the live call it replaces, answered later at the batch price."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import msgspec

from rapport.engine.backend import Backend
from rapport.engine.types import ChatMessage, Completion, CompletionParams

BATCH_PROVIDERS = ("openai", "anthropic")
ItemStatus = Literal["answered", "failed", "expired", "canceled"]


class BatchRequest(msgspec.Struct, frozen=True):
    """One item: its id in the batch and the call it stands for."""

    custom_id: str
    messages: tuple[ChatMessage, ...]
    params: CompletionParams


class BatchState(msgspec.Struct, frozen=True):
    """Where a batch is: `ended` once its results can be read."""

    status: str  # the provider's word
    ended: bool
    total: int
    done: int  # answered so far
    failed: int  # failed, expired or canceled so far


class ItemResult(msgspec.Struct, frozen=True):
    """An item's outcome: a completion (its reply not yet validated as a judge answer), or
    why there is none."""

    custom_id: str
    status: ItemStatus
    completion: Completion | None = None
    error: str | None = None


class BatchClient(Protocol):
    provider: str
    model: str

    async def submit(self, requests: Sequence[BatchRequest]) -> str:
        """Send the requests as one batch; its id."""
        ...

    async def state(self, batch_id: str) -> BatchState: ...

    async def results(
        self, batch_id: str, custom_ids: Sequence[str], requests: Mapping[str, BatchRequest]
    ) -> list[ItemResult]:
        """The ended batch's outcome of each item in `custom_ids`; `requests` holds what the
        items asked where known (a usage the provider left out is then estimated from it)."""
        ...


class BatchUnavailable(Exception):
    """This backend's provider has no batch API."""


def batch_client(backend: Backend) -> BatchClient:
    """The batch API beside a live backend (same SDK client, key, base URL and model); the
    SDKs are imported only when one is used."""
    if backend.provider not in BATCH_PROVIDERS:
        raise BatchUnavailable(backend.provider)
    from rapport.engine.backends.batch_clients import AnthropicBatches, OpenAIBatches

    return OpenAIBatches(backend) if backend.provider == "openai" else AnthropicBatches(backend)
