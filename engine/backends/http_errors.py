"""What HTTP providers share: which statuses are worth retrying and how long they ask to wait."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from types import ModuleType

from rapport.engine.errors import BackendError
from rapport.engine.types import ReportedLimits

LimitsReader = Callable[[Mapping[str, str]], ReportedLimits | None]

RETRYABLE_STATUS = frozenset({408, 409, 429})
# What servers write when they refuse the request itself (pydantic's validation errors, as
# llama-cpp-python's server sends them with a 500; OpenAI's error type): not transient.
INVALID_REQUEST_MARKERS = (
    "validation error",
    "input should be",
    "invalid_request_error",
    "invalid request",
)


def is_retryable_status(status: int, body: str = "") -> bool:
    """408, 409, 429 and every 5xx (529 "overloaded" included) are worth another try, except
    a 5xx whose body says the request is invalid: the same request would fail the same way."""
    if status in RETRYABLE_STATUS:
        return True
    return status >= 500 and not says_request_invalid(body)


def says_request_invalid(body: str) -> bool:
    lowered = body.lower()
    return any(marker in lowered for marker in INVALID_REQUEST_MARKERS)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a provider asks for: `retry-after-ms`, else `retry-after` (seconds or a date)."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header, or None when absent or not a number."""
    value = headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def short_message(message: object, limit: int = 300) -> str:
    """One line, bounded: provider error bodies can be long and multi-line."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def translate_sdk_error(
    error: Exception, sdk: ModuleType, read_limits: LimitsReader | None = None
) -> BackendError | None:
    """The BackendError for an exception of the `openai` or `anthropic` SDK (both generated
    from the same template, with the same exception classes); None for anything else.
    `read_limits` reads the rate limits an error response states (many say them only in 429s)."""
    if isinstance(error, sdk.RateLimitError):
        headers = error.response.headers
        return BackendError(
            "rate_limited",
            "provider answered 429",
            retryable=True,
            retry_after_s=retry_after_seconds(headers),
            limits=read_limits(headers) if read_limits else None,
        )
    if isinstance(error, sdk.APIStatusError):
        headers = error.response.headers
        return BackendError(
            f"http_{error.status_code}",
            short_message(error.message),
            retryable=is_retryable_status(error.status_code, f"{error.message} {error.body}"),
            retry_after_s=retry_after_seconds(headers),
            limits=read_limits(headers) if read_limits else None,
        )
    if isinstance(error, sdk.APITimeoutError):
        return BackendError("timeout", "request timed out", retryable=True)
    if isinstance(error, sdk.APIConnectionError):
        return BackendError("connection", short_message(str(error)), retryable=True)
    if isinstance(error, sdk.APIResponseValidationError | ValueError):
        return BackendError("malformed", short_message(str(error)), retryable=True)
    return None
