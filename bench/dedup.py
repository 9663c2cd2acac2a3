"""`rapport bench dedup`: the near-duplicate pass at scale.

A corpus of N conversations × E exchanges is written straight into a Rapport database (as
Arrow batches: playing 100,000 conversations through the engine would take hours and measure
the engine, not the pass), its turns drawn from pools of random-word turns, with planted
near-copies: groups whose later members copy an earlier conversation with 0 or 1 turns per
side replaced (estimated Jaccard ≈ 1 and ≈ 0.9), and decoys with half the turns replaced (≈ 0.3,
never a cluster at 0.8). The pass runs in a fresh process (its peak RSS is the pass's own, as a
`rapport stats --duplicates` would have), then the corpus grows by a tenth and it runs again:
only the new conversations are hashed. The peak RSS is sampled every 50 ms over the pass's
process and its hashing workers together (a worker's own high-water mark would count the
parent's pages it started beside), or is the process's own high-water mark where higher.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa

from rapport.judges.near_duplicates import DedupSettings
from rapport.stages.dedup import DedupSummary
from rapport.store.arrow_rows import TIMESTAMP, insert_table
from rapport.store.database import Database, connect
from rapport.store.rows import utc_now

TARGETS = {"wall_s": 300.0, "peak_rss_mb": 2048.0}


class DedupBenchSettings(msgspec.Struct, frozen=True):
    conversations: int = 100_000
    exchanges: int = 20
    words_per_turn: int = 40
    pool_turns: int = 100_000  # distinct turns per side the conversations draw from
    vocabulary: int = 8_000
    planted_share: float = 0.03  # conversations that start a planted group
    decoy_share: float = 0.01  # conversations copied with half their turns replaced
    growth: float = 0.1  # the corpus grows by this share before the incremental pass
    seed: int = 0
    chunk: int = 5_000  # conversations written per Arrow batch


SMOKE_SETTINGS = DedupBenchSettings(conversations=2_000, pool_turns=10_000, chunk=1_000)


class PassFigures(msgspec.Struct, frozen=True):
    conversations: int
    hashed: int
    wall_s: float
    peak_rss_mb: float  # the process and its workers sampled together, or the process's own
    # high-water mark when higher (after hashing the workers are gone; a sample can miss a peak)
    main_peak_rss_mb: float  # the pass's process alone (its own high-water mark)
    hashing_s: float
    clustering_s: float
    clusters: dict[str, int]  # per side
    in_clusters: dict[str, int]


class Recovery(msgspec.Struct, frozen=True):
    planted: int  # groups planted (each should be one cluster on each side)
    found_exactly: dict[str, int]  # per side: planted groups found as a cluster, no more or less
    other_clusters: dict[str, int]  # clusters that are no planted group (decoys must not be)


class DedupBenchReport(msgspec.Struct, frozen=True):
    settings: DedupBenchSettings
    dedup: DedupSettings
    build_s: float
    full: PassFigures
    incremental: PassFigures
    recovery: Recovery
    targets: dict[str, float]


class _Corpus:
    """Draws conversations' turns from per-side pools of random-word turns, and plants
    near-copies of earlier ones; remembers the planted groups."""

    def __init__(self, settings: DedupBenchSettings) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)
        vocabulary = np.array([f"w{i}" for i in range(settings.vocabulary)])
        self.pools = {
            side: [
                " ".join(vocabulary[row])
                for row in self.rng.integers(
                    0, settings.vocabulary, (settings.pool_turns, settings.words_per_turn)
                )
            ]
            for side in ("user", "assistant")
        }
        self.turns: dict[int, np.ndarray] = {}  # conversation → (2, exchanges) pool indices
        self.groups: list[list[int]] = []
        self.grouped: set[int] = set()

    def _fresh(self) -> np.ndarray:
        return self.rng.integers(0, self.settings.pool_turns, (2, self.settings.exchanges))

    def _copy(self, source: int, changed: int) -> np.ndarray:
        turns = self.turns[source].copy()
        for side in range(2):
            where = self.rng.choice(self.settings.exchanges, changed, replace=False)
            turns[side, where] = self.rng.integers(0, self.settings.pool_turns, changed)
        return turns

    def draw(self, start: int, stop: int) -> Iterator[int]:
        """Conversations start..stop-1: fresh ones, and (after a few) planted copies of earlier
        ones."""
        s = self.settings
        index = start
        while index < stop:
            roll = self.rng.random()
            if index > 10 and roll < s.planted_share and index + 1 < stop:
                source = int(self.rng.integers(0, index))
                if source not in self.grouped:
                    size = min(int(self.rng.integers(1, 3)), stop - index)
                    self.groups.append([source, *range(index, index + size)])
                    self.grouped.update(self.groups[-1])
                    for offset in range(size):
                        self.turns[index + offset] = self._copy(source, offset % 2)
                        yield index + offset
                    index += size
                    continue
            if index > 10 and roll > 1 - s.decoy_share:
                self.turns[index] = self._copy(int(self.rng.integers(0, index)), s.exchanges // 2)
            else:
                self.turns[index] = self._fresh()
            yield index
            index += 1

    def text(self, conversation: int, side: int, exchange: int) -> str:
        pool = self.pools["user" if side == 0 else "assistant"]
        return pool[self.turns[conversation][side, exchange]]


def conversation_id(index: int) -> str:
    return f"bench-{index:07d}"


def write_corpus(db: Path, corpus: _Corpus, start: int, stop: int) -> None:
    """Conversations start..stop-1, complete, with their messages, in Arrow batches."""
    s = corpus.settings
    now = utc_now()
    with connect(db) as conn:
        for chunk_start in range(start, stop, s.chunk):
            ids = list(corpus.draw(chunk_start, min(stop, chunk_start + s.chunk)))
            names = [conversation_id(i) for i in ids]
            conversations = pa.table(
                {
                    "conversation_id": names,
                    "scenario_id": names,
                    "plan_id": ["bench"] * len(ids),
                    "scenario_index": pa.array(ids, pa.int32()),
                    "target_turns": pa.array([s.exchanges] * len(ids), pa.int32()),
                    "status": ["complete"] * len(ids),
                    "num_messages": pa.array([2 * s.exchanges] * len(ids), pa.int32()),
                    "created_at": pa.array([now] * len(ids), TIMESTAMP),
                }
            )
            insert_table(conn, "conversations", conversations)
            rows = [
                (names[k], 2 * e + side, side, e)
                for k in range(len(ids))
                for e in range(s.exchanges)
                for side in (0, 1)
            ]
            messages = pa.table(
                {
                    "conversation_id": [r[0] for r in rows],
                    "turn_index": pa.array([r[1] for r in rows], pa.int32()),
                    "role": ["user" if r[2] == 0 else "assistant" for r in rows],
                    "content": [
                        corpus.text(ids[k], side, e)
                        for k in range(len(ids))
                        for e in range(s.exchanges)
                        for side in (0, 1)
                    ],
                    "exchange": pa.array([r[3] + 1 for r in rows], pa.int32()),
                    "final": [r[3] == s.exchanges - 1 and r[2] == 0 for r in rows],
                    "created_at": pa.array([now] * len(rows), TIMESTAMP),
                }
            )
            insert_table(conn, "messages", messages)


# The pass in a fresh interpreter: its peak RSS is the pass's own (imports included).
_CHILD = """
import resource, sys, threading, time
from pathlib import Path
import msgspec, psutil
from rapport.judges.near_duplicates import DedupSettings
from rapport.stages.dedup import dedup_corpus

me, peak, done = psutil.Process(), [0], threading.Event()

def sample():  # this process and its hashing workers together, every 50 ms
    while not done.wait(0.05):
        total = 0
        for process in (me, *me.children(recursive=True)):
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
settings = msgspec.json.decode(sys.argv[2], type=DedupSettings)
started = time.monotonic()
summary = dedup_corpus(Path(sys.argv[1]), settings)
wall = time.monotonic() - started
done.set()
sampler.join()
main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(msgspec.json.encode({"summary": summary, "wall_s": wall, "peak_rss_mb": peak[0] / 2**20,
                           "main_peak_rss_mb": main_mb}).decode())
"""


class _ChildResult(msgspec.Struct):
    summary: DedupSummary
    wall_s: float
    peak_rss_mb: float
    main_peak_rss_mb: float


def run_pass(db: Path, settings: DedupSettings, conversations: int) -> PassFigures:
    """One `dedup_corpus` pass in a fresh process: its wall time and peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), msgspec.json.encode(settings).decode()],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the dedup pass failed: {done.stderr.strip()[-2000:]}")
    result = msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=_ChildResult)
    sides = result.summary.sides
    return PassFigures(
        conversations=conversations,
        hashed=result.summary.hashed,
        wall_s=result.wall_s,
        peak_rss_mb=max(result.peak_rss_mb, result.main_peak_rss_mb),  # a sample can miss it
        main_peak_rss_mb=result.main_peak_rss_mb,
        hashing_s=result.summary.hashing_s,
        clustering_s=result.summary.clustering_s,
        clusters={c.side: c.clusters for c in sides},
        in_clusters={c.side: c.in_clusters for c in sides},
    )


def recovery(db: Path, groups: list[list[int]]) -> Recovery:
    planted = {frozenset(conversation_id(i) for i in g) for g in groups}
    found_exactly: dict[str, int] = {}
    other: dict[str, int] = {}
    with connect(db, read_only=True) as conn:
        for side in ("assistant", "user"):
            rows = conn.execute(
                "SELECT list(conversation_id) FROM duplicate_clusters WHERE side = ? "
                "GROUP BY cluster_id",
                [side],
            ).fetchall()
            found = {frozenset(r[0]) for r in rows}
            found_exactly[side] = len(planted & found)
            other[side] = len(found - planted)
    return Recovery(len(planted), found_exactly, other)


def run_dedup_bench(
    settings: DedupBenchSettings,
    out: Path,
    dedup: DedupSettings | None = None,
    log: Callable[[str], None] = print,
) -> DedupBenchReport:
    dedup = dedup or DedupSettings()
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rapport-dedup-"))
    db = workdir / "corpus.duckdb"
    try:
        Database(db).initialise()
        started = time.monotonic()
        corpus = _Corpus(settings)
        n = settings.conversations
        write_corpus(db, corpus, 0, n)
        build_s = time.monotonic() - started
        log(f"corpus: {n:,} conversations × {settings.exchanges} exchanges in {build_s:,.0f} s")
        full = run_pass(db, dedup, n)
        log(f"full pass: {full.wall_s:,.1f} s, peak RSS {full.peak_rss_mb:,.0f} MB")
        grown = n + round(n * settings.growth)
        write_corpus(db, corpus, n, grown)
        incremental = run_pass(db, dedup, grown)
        log(
            f"incremental pass (+{grown - n:,}): {incremental.wall_s:,.1f} s, "
            f"{incremental.hashed:,} hashed, peak RSS {incremental.peak_rss_mb:,.0f} MB"
        )
        found = recovery(db, corpus.groups)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = DedupBenchReport(settings, dedup, build_s, full, incremental, found, TARGETS)
    (out / "dedup.json").write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    return report


def summary_rows(report: DedupBenchReport) -> list[tuple[str, str, str]]:
    """(figure, measured, target) for the command's table."""
    full, inc, found = report.full, report.incremental, report.recovery
    return [
        ("conversations × exchanges", f"{full.conversations:,} × {report.settings.exchanges}", ""),
        ("full pass wall time", f"{full.wall_s:,.1f} s", f"≤ {TARGETS['wall_s']:.0f} s"),
        (
            "full pass peak RSS (process + workers)",
            f"{full.peak_rss_mb:,.0f} MB (the process alone: {full.main_peak_rss_mb:,.0f} MB)",
            f"≤ {TARGETS['peak_rss_mb']:,.0f} MB",
        ),
        (
            "full pass: hashing · clustering",
            f"{full.hashing_s:,.1f} s · {full.clustering_s:,.1f} s",
            "",
        ),
        (
            f"incremental pass (+{inc.conversations - full.conversations:,})",
            f"{inc.wall_s:,.1f} s, {inc.hashed:,} hashed, {inc.peak_rss_mb:,.0f} MB",
            "hashes only the new",
        ),
        *(
            (
                f"planted groups found exactly ({side})",
                f"{found.found_exactly[side]:,} of {found.planted:,}",
                "all",
            )
            for side in ("assistant", "user")
        ),
        *(
            (f"other clusters ({side})", f"{found.other_clusters[side]:,}", "0")
            for side in ("assistant", "user")
        ),
    ]
