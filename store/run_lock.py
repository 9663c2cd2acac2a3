"""One writing run per database file at a time: an OS file lock the kernel frees on any exit,
kill -9 included, so a crashed run never blocks the next one."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rapport.store.errors import StoreError


@contextmanager
def exclusive_run(database: Path) -> Iterator[None]:
    """Hold `<database>.lock` for the duration of a run; refuse if another run holds it."""
    lock_path = database.with_name(database.name + ".lock")
    try:
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StoreError(f"{lock_path}: cannot create lock file: {error.strerror}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"{database}: another rapport run is writing to this database; "
                "wait for it to finish (or stop it) and run again"
            ) from None
        yield
    finally:
        os.close(handle)
