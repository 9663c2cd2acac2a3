"""What the commands that read (or merge, or report on) a database do with it, as the public API
and the command line both call it: `rapport.Corpus.stats`, `rapport.merge` and `rapport sql |
stats | report | merge | model tiny` end here, so the command line holds no SQL and opens no
database itself. Each function takes the database's path and leaves a missing or foreign file to
the store's one-line StoreError (nothing is created, unlike `rapport.open`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rapport.config.constants import DEDUP_CLUSTERS_SHOWN, DEDUP_THRESHOLD
from rapport.config.secrets import Redactor
from rapport.judges.near_duplicates import DedupSettings
from rapport.judges.repetition import describe, repetition_report
from rapport.reports.judging import write_report
from rapport.stages.dedup import DedupSummary, check_threshold, dedup_corpus
from rapport.store.database import connect_for_reading
from rapport.store.merge import MergeSummary, merge_shards
from rapport.store.query import QueryResult, query, query_batches
from rapport.store.review_queues import DEFAULT_QUEUE, STRATA, SampleSummary
from rapport.store.review_queues import sample_queue as sample_review_queue  # draws a queue
from rapport.store.run_secrets import database_redactor
from rapport.store.stats import Section, complete_transcripts, corpus_stats, duplicate_sections

__all__ = [
    "DEFAULT_QUEUE",
    "STRATA",
    "DedupSummary",
    "MergeSummary",
    "QueryResult",
    "SampleSummary",
    "Section",
    "check_database",
    "corpus_texts",
    "dedup_threshold",
    "duplicates",
    "merge",
    "repetition_sections",
    "sample_review_queue",
    "sql_batches",
    "sql_rows",
    "stats_sections",
    "stored_redactor",
    "write_corpus_report",
]


def stored_redactor(db: Path) -> Redactor:
    """The redactor for text read from `db`: the environment's keys and those its stored runs'
    settings name (`api_key_env`); an unreadable file gives the environment's alone."""
    return database_redactor(db, os.environ)


def sql_rows(db: Path, text: str, limit: int | None) -> QueryResult:
    """A read-only query's rows, at most `limit` (None: all), `truncated` when more matched.
    Raises StoreError for a write, invalid SQL or an unreadable file."""
    return query(db, text, limit)


def sql_batches(db: Path, text: str, limit: int | None) -> Iterator[QueryResult]:
    """A read-only query's rows batch by batch (close the iterator to let the file go).
    Raises StoreError as `sql_rows` does, when the first batch is asked for."""
    return query_batches(db, text, limit)


def stats_sections(db: Path) -> list[Section]:
    """The corpus overview `rapport stats` prints, section by section (the judging ones once
    something is judged). Raises StoreError for an unreadable file."""
    return corpus_stats(db)


def repetition_sections(db: Path) -> list[Section]:
    """Over-used phrases and diversity per side over the complete conversations (`rapport stats
    --repetition`). Raises StoreError for an unreadable file."""
    return [
        Section(title, result)
        for title, result in describe(repetition_report(complete_transcripts(db)))
    ]


def dedup_threshold(value: float | None, flag: str = "--threshold") -> float:
    """The near-duplicate threshold to use (the default for None); raises BadInput outside
    (0, 1], naming `flag`."""
    return check_threshold(DEDUP_THRESHOLD if value is None else value, flag)


def duplicates(
    db: Path, threshold: float, say: Callable[[str], None] | None = None
) -> tuple[DedupSummary, list[Section]]:
    """Compute (or refresh) the near-duplicate clusters, storing them in `duplicate_clusters`
    (only new conversations are hashed), then the largest clusters per side. Raises BadInput
    for a threshold outside (0, 1], StoreError for an unreadable file or a run writing to it."""
    summary = dedup_corpus(db, DedupSettings(threshold=threshold), say)
    return summary, duplicate_sections(db, DEDUP_CLUSTERS_SHOWN)


def corpus_texts(db: Path) -> list[str]:
    """Every turn's text of the complete conversations, in conversation order (a tokenizer's
    training text). Raises StoreError for an unreadable file."""
    return [turn.content for turns in complete_transcripts(db).values() for turn in turns]


def write_corpus_report(db: Path, out: Path, *, overwrite: bool = False) -> Path:
    """Write report.md and its PNG plots into `out` (never over files the user put there unless
    `overwrite`), text redacted; the Markdown's path. Raises BadInput for a folder it may not
    replace, StoreError for an unreadable database."""
    return write_report(db, out, stored_redactor(db), overwrite=overwrite)


def merge(out: Path, shards: Sequence[Path]) -> MergeSummary:
    """Merge shard files of one plan into the corpus `out` (created if missing); again after a
    shard grew adds only what is new. Raises StoreError (nothing written) for shards of another
    plan, domain or seed, a corpus of another plan, no shard, or `out` among the shards."""
    return merge_shards(out, shards)


def check_database(path: Path) -> None:
    """A missing or foreign file is the store's one-line StoreError; nothing is created."""
    connect_for_reading(path).close()
