"""Typed reads (store.reads): conversations filtered and paged, transcripts as Turns, verdicts,
corpus counts, the benchmark's readings; and the Arrow schemas the writer uses, derived from the
row Structs."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from rapport.stages.generate import GenerateRequest, generate
from rapport.store.arrow_rows import MESSAGES, arrow_schema
from rapport.store.batch import CONVERSATION_CHANGES
from rapport.store.database import Database
from rapport.store.reads import (
    ConversationFilter,
    Turn,
    conversations,
    corpus_stats,
    throughput_readings,
    transcript,
    transcripts,
    verdicts,
)
from rapport.store.rows import MessageRow, StoreEvent, VerdictRow, utc_now
from rapport.store.writer import write_batch

COUNT = 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Database:
    db = tmp_path_factory.mktemp("reads") / "corpus.duckdb"
    summary = generate(
        GenerateRequest(db=db, count=COUNT, turns=2, backend="simulated"), environ={}
    )
    assert summary.complete == COUNT
    return Database(db)


def test_conversations_are_paged_and_filtered(corpus):
    every = corpus.run_sync(lambda c: conversations(c, limit=1000))
    assert len(every) == COUNT and all(row.status == "complete" for row in every)
    pages = [corpus.run_sync(lambda c, o=o: conversations(c, limit=4, offset=o)) for o in (0, 4)]
    assert [len(page) for page in pages] == [4, COUNT - 4]
    assert [row.conversation_id for page in pages for row in page] == [
        row.conversation_id for row in every
    ]
    topic = every[0].topic_categories[0]
    on_topic = corpus.run_sync(lambda c: conversations(c, ConversationFilter(topic=topic)))
    assert on_topic and all(topic in row.topic_categories for row in on_topic)
    assert len(on_topic) == sum(topic in row.topic_categories for row in every)
    assert corpus.run_sync(lambda c: conversations(c, ConversationFilter(status="failed"))) == []
    run_id = every[0].run_id
    assert len(corpus.run_sync(lambda c: conversations(c, ConversationFilter(run_id=run_id)))) == (
        COUNT
    )
    first = every[0]
    assert first.exchanges == 2 and first.num_messages == 4
    assert first.prompt_tokens > 0 and isinstance(first.prompt_tokens, int)


def test_a_transcript_is_turns_in_order(corpus):
    cid = corpus.run_sync(lambda c: conversations(c, limit=1))[0].conversation_id
    turns = corpus.run_sync(lambda c: transcript(c, cid))
    assert all(isinstance(turn, Turn) for turn in turns)
    assert [turn.turn_index for turn in turns] == [0, 1, 2, 3]
    assert [turn.role for turn in turns] == ["user", "assistant"] * 2
    assert [turn.exchange for turn in turns] == [1, 1, 2, 2]  # 1-based
    assert corpus.run_sync(lambda c: transcripts(c, [cid, "missing"])) == {
        cid: turns,
        "missing": [],
    }
    assert corpus.run_sync(lambda c: transcripts(c, ["missing"])) == {"missing": []}


def test_verdicts_and_corpus_counts(corpus):
    cid = corpus.run_sync(lambda c: conversations(c, limit=1))[0].conversation_id
    written = [
        VerdictRow(cid, "judge-a", criterion, "YES", "fine", "sim", utc_now())
        for criterion in ("c2", "c1")
    ]
    corpus.run_sync(lambda c: write_batch(c, [StoreEvent(verdicts=tuple(written))]))
    read = corpus.run_sync(lambda c: verdicts(c, conversation_id=cid))
    assert [v.criterion_id for v in read] == ["c1", "c2"]
    assert read[0].answer == "YES" and read[0].created_at.tzinfo is not None
    assert corpus.run_sync(lambda c: verdicts(c, judge_id="judge-b")) == []
    stats = corpus.run_sync(corpus_stats)
    with duckdb.connect(str(corpus.path), read_only=True) as conn:
        messages, prompt = conn.execute(
            "SELECT count(*), sum(prompt_tokens) FROM messages"
        ).fetchone()
    assert stats.conversations == COUNT and stats.by_status == {"complete": COUNT}
    assert (stats.messages, stats.prompt_tokens) == (messages, prompt)


def test_the_benchmark_reads_through_the_store(corpus):
    read = throughput_readings(corpus.path)
    assert read.started <= read.ended
    assert sum(count for _, count, _ in read.per_second) == COUNT * 4
    assert read.requests == COUNT * 4 and read.failed == 0


def test_arrow_schemas_come_from_the_row_structs():
    assert (
        pa.schema(
            [
                ("conversation_id", pa.string()),
                ("turn_index", pa.int32()),
                ("role", pa.string()),
                ("content", pa.string()),
                ("exchange", pa.int32()),
                ("final", pa.bool_()),
                ("prompt_tokens", pa.int32()),
                ("completion_tokens", pa.int32()),
                ("latency_ms", pa.float64()),
                ("backend", pa.string()),
                ("model", pa.string()),
                ("run_id", pa.string()),
                ("created_at", pa.timestamp("us", tz="UTC")),
                ("attempts", pa.int32()),
                ("finish_reason", pa.string()),
                ("cache_read_tokens", pa.int32()),
                ("cache_write_tokens", pa.int32()),
                ("cost_usd", pa.float64()),
            ]
        )
        == MESSAGES
    )
    assert MESSAGES.names == list(MessageRow.__struct_fields__)
    assert CONVERSATION_CHANGES.field("started_at").type == pa.timestamp("us", tz="UTC")
    with pytest.raises(TypeError, match="no Arrow column type"):
        arrow_schema(StoreEvent)  # a Struct of Structs is no row
