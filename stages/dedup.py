"""The near-duplicate pass: hash the conversations not hashed yet (their signatures are stored,
so a grown corpus costs only its new conversations), then cluster each side from the stored
signatures. `rapport stats --duplicates` writes the corpus's clusters; `rapport dataset build
--dedup` clusters only the conversations it would keep."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import msgspec

from rapport.config.constants import DEDUP_BATCH_CONVERSATIONS, DEDUP_WORKERS
from rapport.config.errors import RapportError
from rapport.judges.near_duplicates import (
    ClusterMember,
    DedupSettings,
    clusters,
    signatures,
)
from rapport.store.database import Database, connect_for_reading
from rapport.store.dedup_rows import SIDES
from rapport.store.errors import StoreError
from rapport.store.run_lock import exclusive_run
from rapport.store.signatures import (
    judged_scores,
    load_signatures,
    replace_clusters,
    save_signatures,
    side_texts,
    unhashed_conversations,
)


class SideCount(msgspec.Struct, frozen=True):
    side: str
    conversations: int  # complete conversations with words on this side
    clusters: int
    in_clusters: int  # conversations in a cluster (kept members included)

    @property
    def duplicates(self) -> int:  # members a dedup leaves out
        return self.in_clusters - self.clusters


class DedupSummary(msgspec.Struct, frozen=True):
    settings: DedupSettings
    hashed: int  # conversations hashed by this pass (the others' signatures were stored)
    sides: tuple[SideCount, ...]
    elapsed_s: float
    hashing_s: float = 0.0  # reading the new conversations' text, hashing, storing signatures
    clustering_s: float = 0.0  # LSH and clusters over every stored signature


def check_threshold(value: float, flag: str) -> float:
    """A Jaccard threshold in (0, 1], or one line saying what is wrong."""
    if not 0.0 < value <= 1.0:
        raise RapportError(
            f"{flag} must be above 0 and at most 1 (a Jaccard similarity), not {value:g}"
        )
    return value


def hash_unhashed(
    database: Database, settings: DedupSettings, say: Callable[[str], None] | None = None
) -> int:
    """Store signatures for every complete corpus conversation that has none yet, reading
    DEDUP_BATCH_CONVERSATIONS conversations' text at a time and hashing up to DEDUP_WORKERS
    batches at once in worker processes (while the next batch is read); the number hashed."""
    pending = database.run_sync(lambda conn: unhashed_conversations(conn, settings))
    batches = [
        pending[start : start + DEDUP_BATCH_CONVERSATIONS]
        for start in range(0, len(pending), DEDUP_BATCH_CONVERSATIONS)
    ]
    workers = min(DEDUP_WORKERS, os.cpu_count() or 1, len(batches))
    done = 0

    def read(batch: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
        texts = database.run_sync(lambda conn: side_texts(conn, batch))
        keys = [(cid, side) for cid in batch for side in SIDES]
        return keys, [texts.get(key, "") for key in keys]

    def save(keys: list[tuple[str, str]], values: list) -> None:
        nonlocal done
        database.run_sync(lambda conn: save_signatures(conn, keys, values, settings))
        done += len(keys) // len(SIDES)
        if say is not None:
            say(f"hashed {done:,}/{len(pending):,} conversations")

    if workers <= 1:
        for batch in batches:
            keys, texts = read(batch)
            save(keys, signatures(texts, settings))
        return len(pending)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding DuckDB threads
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        in_flight: deque[tuple[list[tuple[str, str]], Future]] = deque()
        for batch in batches:
            keys, texts = read(batch)
            in_flight.append((keys, pool.submit(signatures, texts, settings)))
            if len(in_flight) > workers:
                keys, future = in_flight.popleft()
                save(keys, future.result())
        while in_flight:
            keys, future = in_flight.popleft()
            save(keys, future.result())
    return len(pending)


def find_clusters(
    database: Database, settings: DedupSettings, ids: Sequence[str] | None = None
) -> list[ClusterMember]:
    """Both sides' clusters among the complete corpus conversations (or `ids` only), from the
    stored signatures."""
    scores = database.run_sync(judged_scores)
    found: list[ClusterMember] = []
    for side in SIDES:
        side_ids, matrix = database.run_sync(
            lambda conn, side=side: load_signatures(conn, side, settings, ids)
        )
        found += clusters(side, side_ids, matrix, scores, settings.threshold)
        del matrix
    return found


def _side_counts(database: Database, settings: DedupSettings, members: Sequence[ClusterMember]):
    counts = dict(
        database.run_sync(
            lambda conn: conn.execute(
                "SELECT side, count(*) FROM minhash_signatures "
                "WHERE shingle_size = ? AND num_perm = ? AND signature IS NOT NULL "
                "AND conversation_id IN (SELECT conversation_id FROM corpus_conversations "
                "WHERE status = 'complete') GROUP BY side",
                [settings.shingle_size, settings.num_perm],
            ).fetchall()
        )
    )
    return tuple(
        SideCount(
            side,
            counts.get(side, 0),
            sum(m.kept for m in members if m.side == side),
            sum(m.side == side for m in members),
        )
        for side in SIDES
    )


@contextmanager
def _locked(db: Path) -> Iterator[Database]:
    """The database to write signatures into, under the run lock (a run writing to it refuses
    the pass at once, in one line); a missing, empty or foreign file is refused, never created
    or changed."""
    if not db.exists():
        raise StoreError(f"{db}: no such database")
    with exclusive_run(db):
        with closing(connect_for_reading(db)):  # refuses an empty or foreign file
            pass
        database = Database(db)
        database.initialise()
        yield database


def dedup_corpus(
    db: Path, settings: DedupSettings, say: Callable[[str], None] | None = None
) -> DedupSummary:
    """Hash what is new, cluster the whole corpus and store the clusters in
    `duplicate_clusters` (replacing the last pass's); refused while a run writes to `db`."""
    started = time.monotonic()
    check_threshold(settings.threshold, "--threshold")
    with _locked(db) as database:
        hashed = hash_unhashed(database, settings, say)
        hashing_s = time.monotonic() - started
        members = find_clusters(database, settings)
        database.run_sync(lambda conn: replace_clusters(conn, members, settings))
        sides = _side_counts(database, settings, members)
    elapsed_s = time.monotonic() - started
    return DedupSummary(settings, hashed, sides, elapsed_s, hashing_s, elapsed_s - hashing_s)


def duplicates_among(db: Path, ids: Sequence[str], settings: DedupSettings) -> list[ClusterMember]:
    """The members to leave out when keeping one conversation per cluster among `ids`: a
    conversation is left out if it is a non-kept member of a cluster on either side (one
    member each, the assistant side's when it is one on both)."""
    with _locked(db) as database:
        hash_unhashed(database, settings)
        members = find_clusters(database, settings, ids)
    left_out: dict[str, ClusterMember] = {}
    for member in members:
        if not member.kept:
            left_out.setdefault(member.conversation_id, member)
    return sorted(left_out.values(), key=lambda m: m.conversation_id)
