"""Batches that wait on disk beside the database while another process holds the file.

A batch is a folder `<db>.spool/<sequence>/` of Arrow IPC files, one per table it writes. It is
written under a temporary name and renamed into place, so a crash leaves either a whole batch or
none. Batches are replayed in sequence order; each replay records the batch's id in
`spooled_batches` in the same transaction as its rows, so a crash between that commit and the
folder's removal never applies it twice.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc

from rapport.store.batch import Encoded, apply_batch
from rapport.store.transaction import transaction

_TMP_PREFIX = ".tmp-"


class Spool:
    """The spool folder of one database file."""

    def __init__(self, database: Path) -> None:
        self.folder = database.with_name(database.name + ".spool")
        self._next = 0

    def batches(self) -> list[Path]:
        """The complete batches waiting, oldest first (half-written ones are removed)."""
        if not self.folder.is_dir():
            return []
        waiting = []
        for entry in os.scandir(self.folder):
            if entry.name.startswith(_TMP_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)  # a crash while spooling
            elif entry.is_dir():
                waiting.append(Path(entry.path))
        return sorted(waiting)

    def __len__(self) -> int:
        return len(self.batches())

    def put(self, batch: Encoded) -> Path:
        """Write one batch after every batch already waiting."""
        self.folder.mkdir(exist_ok=True)
        waiting = self.batches()
        number = max(self._next, int(waiting[-1].name.split("-")[0]) + 1 if waiting else 0)
        self._next = number + 1
        final = self.folder / f"{number:012d}-{uuid.uuid4().hex[:12]}"
        staging = self.folder / f"{_TMP_PREFIX}{final.name}"
        staging.mkdir()
        for order, (name, table) in enumerate(batch.items()):
            path = staging / f"{order:02d}-{name}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                out.write_table(table)
        for path in [*staging.iterdir(), staging]:
            _fsync(path)
        os.rename(staging, final)
        _fsync(self.folder)
        return final

    def replay(
        self,
        conn: duckdb.DuckDBPyConnection,
        now: datetime,
    ) -> int:
        """Apply every waiting batch in order, each in its own transaction; the number applied."""
        replayed = 0
        for folder in self.batches():
            batch_id = folder.name
            batch = read_batch(folder)
            with transaction(conn):
                done = conn.execute(
                    "SELECT 1 FROM spooled_batches WHERE batch_id = ?", [batch_id]
                ).fetchone()
                if done is None:
                    apply_batch(conn, batch)
                    conn.execute("INSERT INTO spooled_batches VALUES (?, ?)", [batch_id, now])
            shutil.rmtree(folder)
            replayed += done is None
        return replayed


def read_batch(folder: Path) -> Encoded:
    batch: Encoded = {}
    for path in sorted(folder.iterdir()):
        with pa.memory_map(str(path)) as source:
            batch[path.stem.split("-", 1)[1]] = pa.ipc.open_file(source).read_all()
    return batch


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
