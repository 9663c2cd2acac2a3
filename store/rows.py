"""The rows actors send to the store writer; each is one fact that crosses into DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from rapport.config.sides import Side


def utc_now() -> datetime:
    """Naive UTC timestamp, as stored in DuckDB TIMESTAMP columns."""
    return datetime.now(UTC).replace(tzinfo=None)


class MessageRow(msgspec.Struct, frozen=True):
    conversation_id: str
    turn_index: int
    role: str
    content: str
    exchange: int
    final: bool
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    backend: str
    model: str
    run_id: str
    created_at: datetime
    attempts: int = 1  # 1 + retries (429s included); latency_ms spans every attempt
    finish_reason: str | None = None  # `length` / `max_tokens`: cut by the token budget
    cache_read_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it
    cost_usd: float | None = None  # at the model's price; None: no known price


class ConversationUpdate(msgspec.Struct, frozen=True):
    """A change of a conversation's status (started, complete or failed)."""

    conversation_id: str
    status: str
    run_id: str
    at: datetime
    end_reason: str | None = None
    num_messages: int | None = None
    error: str | None = None


class ErrorRow(msgspec.Struct, frozen=True):
    run_id: str
    conversation_id: str | None
    turn_index: int | None
    role: str | None
    kind: str
    message: str
    created_at: datetime


class VerdictRow(msgspec.Struct, frozen=True):
    conversation_id: str
    judge_id: str
    criterion_id: str
    answer: str
    reasoning: str
    judge_model: str
    created_at: datetime


class JudgeFailureRow(msgspec.Struct, frozen=True):
    conversation_id: str
    judge_id: str
    criterion_id: str
    error: str
    created_at: datetime


class AssessmentRow(msgspec.Struct, frozen=True):
    conversation_id: str
    judge_id: str
    score: float
    passed: bool
    safety_failed: bool
    pass_threshold: float
    category_scores: str  # JSON
    failed_gates: list[str]
    created_at: datetime


class StoreEvent(msgspec.Struct, frozen=True):
    """What one actor step writes, applied in a single transaction with its batch.

    A conversation's last message and its completion travel in the same event, so they can
    never be split across transactions.
    """

    message: MessageRow | None = None
    update: ConversationUpdate | None = None
    error: ErrorRow | None = None
    verdicts: tuple[VerdictRow, ...] = ()
    judge_failures: tuple[JudgeFailureRow, ...] = ()
    assessment: AssessmentRow | None = None
    side: Side = "assistant"  # whose verdicts: the user side's go to the simulator_ tables
