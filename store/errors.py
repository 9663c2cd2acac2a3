"""Errors raised by the store, shown to the user as one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from rapport.config.errors import BadInput


class StoreError(BadInput):
    """The database file cannot be opened, is locked, or a query is refused."""


# The operating system's words for a write that found no room (duckdb reports them in its text).
_NO_ROOM = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT))


def no_room_to_write(path: Path, error: BaseException) -> StoreError | None:
    """A disk-full or file-size-limit failure as one line, or None for any other error.
    Each batch is one transaction, so what was committed stays and a re-run resumes."""
    reason = next((words for words in _NO_ROOM if words in str(error)), None)
    if reason is None:
        return None
    return StoreError(
        f"{path}: cannot write ({reason}); everything committed is kept: free disk space or "
        "raise the file-size limit, then run the same command again to resume"
    )
