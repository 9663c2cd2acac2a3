"""What the progress display shows while the writer waits for its file (store.database):
defined in the store, which reports it, and shown by the engine's run progress above it."""

from __future__ import annotations

from datetime import datetime

import msgspec


class StoreWait(msgspec.Struct):
    """The writer waiting for its database file while another process (a reader) holds it:
    rows wait on disk beside the file meanwhile, nothing is given up."""

    database: str
    holder: str  # "PID 1234", or "another process" when DuckDB does not say
    since: datetime  # UTC
    spooled_batches: int = 0
