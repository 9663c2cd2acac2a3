"""Review queues worth a person's minute: `rapport review sample --strategy` draws by the judges'
disagreement or by a score near the threshold, with the reason stored; stratifying on topics
keeps every topic category a conversation carries in proportion; several named queues live in
one file, each with its own progress; a schema-3 file's one queue becomes `default`."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from rapport.store.database import connect_for_reading
from rapport.store.errors import StoreError
from rapport.store.review_queues import queues, sample_queue, strategy_agreement
from rapport.store.reviews import Review, save_review
from tests.conftest import error_lines, rapport_in_process
from tests.viewer_helpers import judged_corpus

COUNT = 40


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    return judged_corpus(tmp_path_factory.mktemp("queues"), COUNT)[0]


@pytest.fixture
def db(judged, tmp_path):
    """A copy of the judged corpus per test: queues drawn in one test stay out of the others."""
    copy = tmp_path / "corpus.duckdb"
    shutil.copy(judged, copy)
    return copy


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


@pytest.mark.parametrize("n", [10, 20, 30])
def test_a_topic_stratified_queue_holds_every_topic_category_in_proportion(db, n):
    """Every category a conversation carries counts, not the alphabetically first one (stored
    sorted, that left whole categories out of the queue)."""
    outcome = rapport_in_process(
        "review", "sample", "--db", str(db), "--n", str(n), "--stratify", "topic"
    )
    assert outcome.returncode == 0, outcome
    complete = sql(db, "SELECT count(*) FROM conversation_overview WHERE status = 'complete'")
    corpus = dict(
        sql(
            db,
            "SELECT t, count(*) FROM (SELECT unnest(topic_categories) AS t "
            "FROM conversation_overview WHERE status = 'complete') GROUP BY t",
        )
    )
    queued = dict(
        sql(
            db,
            "SELECT t, count(*) FROM (SELECT unnest(o.topic_categories) AS t FROM "
            "conversation_overview o JOIN review_queue USING (conversation_id)) GROUP BY t",
        )
    )
    assert len(corpus) >= 5  # the test means something: many categories, several per scenario
    assert sum(corpus.values()) > complete[0][0]
    for category, count in corpus.items():
        expected = n * count / complete[0][0]
        # within 1.5 conversations of its share (in proportion to the first topic alone, the
        # same draws are 2 off: the other topics come along by chance)
        assert abs(queued.get(category, 0) - expected) <= 1.5, (category, queued, expected)


def test_primary_topic_stratifies_on_the_first_topic_the_plan_drew(db):
    summary = sample_queue(db, 12, stratify=("primary-topic",), seed=1)
    primaries = sql(
        db,
        "SELECT q.stratum, json_extract_string(s.topics, '$[0].category') FROM review_queue q "
        "JOIN conversations c USING (conversation_id) JOIN scenarios s USING (scenario_id)",
    )
    assert all(stratum == primary for stratum, primary in primaries)
    assert sum(summary.strata.values()) == 12  # one stratum per conversation


def test_disagreement_queues_the_judges_split_on_pass_first_with_the_reason(db):
    outcome = rapport_in_process(
        "review", "sample", "--db", str(db), "--n", "6", "--strategy", "disagreement",
        "--queue", "hard", "--reviewer", "ann",
    )  # fmt: skip
    assert outcome.returncode == 0, outcome
    assert "6 conversations queued for review in queue hard for ann (disagreement" in outcome.stdout
    split = {
        cid
        for (cid,) in sql(
            db,
            "SELECT conversation_id FROM assessments GROUP BY 1 HAVING count(DISTINCT passed) > 1",
        )
    }
    parted = dict(
        sql(
            db,
            "SELECT conversation_id, count(*) FROM (SELECT conversation_id, criterion_id "
            "FROM verdicts GROUP BY ALL HAVING count(DISTINCT answer) > 1) GROUP BY 1",
        )
    )
    queued = sql(
        db,
        "SELECT conversation_id, strategy, reviewer, reason FROM review_queue "
        "WHERE queue = 'hard' ORDER BY position",
    )
    assert len(split) >= 6  # two judges of different quality part often on a small corpus
    ids = [cid for cid, *_ in queued]
    assert set(ids) <= split  # pass/fail splits come before any criteria-only disagreement
    counts = [parted.get(cid, 0) for cid in ids]
    assert counts == sorted(counts, reverse=True)  # then the most criteria first
    assert max(counts) == max(parted.get(cid, 0) for cid in split)
    for cid, strategy, reviewer, reason in queued:
        assert (strategy, reviewer) == ("disagreement", "ann")
        assert reason.startswith("judges disagree on pass (a: ")
        assert f"{parted[cid]} criteria answered differently" in reason


def test_borderline_queues_the_scores_nearest_the_threshold(db):
    sample_queue(db, 5, strategy="borderline", queue="edge", seed=2)
    gaps = sql(
        db,
        "SELECT abs(j.mean_score - 0.8) FROM conversation_judgement j "
        "WHERE j.mean_score IS NOT NULL ORDER BY 1",
    )
    queued = sql(
        db,
        "SELECT abs(j.mean_score - 0.8), q.reason FROM review_queue q "
        "JOIN conversation_judgement j USING (conversation_id) ORDER BY q.position",
    )
    assert [round(gap, 9) for gap, _ in queued] == [round(gap, 9) for (gap,) in gaps[:5]]
    assert all("the pass threshold 0.8" in reason for _, reason in queued)


def test_several_queues_live_in_one_file_each_with_its_own_progress(db):
    sample_queue(db, 4, queue="first", reviewer="ann", seed=1)
    sample_queue(db, 3, strategy="borderline", queue="second", seed=1)
    sample_queue(db, 5, queue="first", reviewer="ann", seed=2)  # replaces `first` alone
    first = [cid for (cid,) in sql(db, "SELECT conversation_id FROM review_queue "
                                        "WHERE queue = 'first' ORDER BY position")]  # fmt: skip
    save_review(db, Review(first[0], "ann", {"CQ1": "YES", "overall": "YES"}))
    save_review(db, Review(first[1], "bob", {"CQ1": "NO", "overall": "NO"}))
    with connect_for_reading(db) as conn:
        found = {q.name: (q.strategy, q.reviewer, q.size, q.reviewed) for q in queues(conn)}
    # `first` is ann's: bob's review is not her progress; `second` is anyone's
    assert found == {"first": ("random", "ann", 5, 1), "second": ("borderline", None, 3, 0)}


def test_kappa_per_strategy_pairs_each_review_with_the_pass_rule(db):
    sample_queue(db, 4, queue="plain", seed=3)
    ids = [cid for (cid,) in sql(db, "SELECT conversation_id FROM review_queue ORDER BY 1")]
    rule = dict(sql(db, "SELECT conversation_id, passed FROM conversation_judgement"))
    answers = ["YES", "NO", "YES", "NO"]
    for cid, answer in zip(ids, answers, strict=True):
        save_review(db, Review(cid, "ann", {"CQ1": "YES", "overall": answer}))
    pairs = [(a, "YES" if rule[cid] else "NO") for cid, a in zip(ids, answers, strict=True)]
    with connect_for_reading(db) as conn:
        (row,) = strategy_agreement(conn)
    assert (row.strategy, row.conversations, row.reviews) == ("random", 4, 4)
    observed = sum(a == b for a, b in pairs) / 4
    chance = (
        sum(
            sum(a == label for a, _ in pairs) * sum(b == label for _, b in pairs)
            for label in ("YES", "NO")
        )
        / 16
    )
    expected_kappa = None if chance == 1 else (observed - chance) / (1 - chance)
    assert row.kappa == (
        None if expected_kappa is None else pytest.approx(expected_kappa, abs=1e-4)
    )
    assert row.agreement == pytest.approx(observed, abs=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--strategy", "loudest"), "--strategy: 'loudest' is not one of"),
        (("--stratify", "mood"), "--stratify: unknown mood"),
        (("--queue", "a b"), "queue name 'a b'"),
        (("--reviewer", " "), "--reviewer: a name of 1 to 80 characters"),
    ],
)
def test_bad_sample_arguments_are_one_line(db, args, message):
    outcome = rapport_in_process("review", "sample", "--db", str(db), "--n", "3", *args)
    assert outcome.returncode == 2, outcome
    assert len(error_lines(outcome)) == 1 and message in outcome.stderr


def test_disagreement_with_one_judge_says_it_needs_two(tmp_path):
    db, _ = judged_corpus(tmp_path, 3)
    with duckdb.connect(str(db)) as conn:
        conn.execute("DELETE FROM assessments WHERE judge_id = 'b'")
        conn.execute("DELETE FROM verdicts WHERE judge_id = 'b'")
    with pytest.raises(StoreError, match="two judges or more"):
        sample_queue(db, 2, strategy="disagreement")


def test_a_schema_3_queue_becomes_the_default_queue(db):
    """A file from before named queues: its one queue keeps its conversations and order."""
    ids = [cid for (cid,) in sql(db, "SELECT conversation_id FROM conversations ORDER BY 1")][:3]
    with duckdb.connect(str(db)) as conn:
        conn.execute("DROP TABLE review_queue")
        conn.execute(
            "CREATE TABLE review_queue (conversation_id VARCHAR PRIMARY KEY, position INTEGER "
            "NOT NULL, stratum VARCHAR, created_at TIMESTAMPTZ NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO review_queue VALUES (?, ?, ?, now())",
            [(cid, i, "passed") for i, cid in enumerate(ids)],
        )
        conn.execute("UPDATE rapport_meta SET value = '3' WHERE key = 'schema_version'")
    connect_for_reading(db).close()
    assert sql(
        db,
        "SELECT queue, conversation_id, strategy, reason FROM review_queue ORDER BY position",
    ) == [(  "default", cid, "random", "random draw from stratum passed") for cid in ids]  # fmt: skip
    assert sql(db, "SELECT value FROM rapport_meta WHERE key = 'schema_version'") == [("4",)]
