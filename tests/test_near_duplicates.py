"""Near-duplicates: clusters per side at several similarity levels, the kept member, `dataset
build --dedup`, incremental passes, and bad input — over a corpus played by the real engine
(simulated backend), judged, with near-copies planted in its stored turns."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from rapport.judges.near_duplicates import DedupSettings, clusters, shingles
from rapport.stages import dedup as dedup_stage
from rapport.stages.dedup import dedup_corpus
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.store.run_lock import exclusive_run
from tests.conftest import error_lines, rapport_in_process

EXCHANGES = 20
WORDS = 30
SIDES = ("user", "assistant")


def _turn(rng: random.Random) -> str:
    return " ".join(f"w{rng.randrange(5_000)}" for _ in range(WORDS))


def _ids(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT conversation_id FROM conversations ORDER BY conversation_id"
            ).fetchall()
        ]


def _plant(db: Path, texts: dict[str, dict[str, list[str]]]) -> None:
    """Each conversation's stored turns become `texts[id][side]` (one text per exchange)."""
    with duckdb.connect(str(db)) as conn:
        for cid, sides in texts.items():
            for side, turns in sides.items():
                for exchange, text in enumerate(turns, start=1):
                    conn.execute(
                        "UPDATE messages SET content = ? "
                        "WHERE conversation_id = ? AND role = ? AND exchange = ?",
                        [text, cid, side, exchange],
                    )


def _changed(turns: list[str], which: list[int], rng: random.Random) -> list[str]:
    return [_turn(rng) if i in which else t for i, t in enumerate(turns)]


def _scores(db: Path, scores: dict[str, float]) -> None:
    with duckdb.connect(str(db)) as conn:
        conn.execute("UPDATE assessments SET passed = true, safety_failed = false")
        for cid, score in scores.items():
            conn.execute("UPDATE assessments SET score = ? WHERE conversation_id = ?", [score, cid])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """10 conversations, every one judged and passing. c0's texts are copied into c1
    (identical), c2 (one turn of 20 changed per side), c3 (4 turns changed) and c4 (half
    changed); c6's user side copies c5's (its assistant side is its own); the rest unrelated.
    Scores: c0 = c1 = 0.9 (the tie goes to the lower id), c2 0.7, c3 0.95, c5 0.6, c6 0.8."""
    db = tmp_path_factory.mktemp("dedup") / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=10, backend="simulated", seed=5, turns=EXCHANGES))
    judge_corpus(JudgeRequest(db=db, judges=("simulated:quality=0.95",)))
    c = _ids(db)
    rng = random.Random(7)
    texts = {cid: {side: [_turn(rng) for _ in range(EXCHANGES)] for side in SIDES} for cid in c}
    for side in SIDES:
        source = texts[c[0]][side]
        texts[c[1]][side] = list(source)
        texts[c[2]][side] = _changed(source, [7], rng)
        texts[c[3]][side] = _changed(source, [2, 8, 13, 18], rng)
        texts[c[4]][side] = _changed(source, list(range(0, EXCHANGES, 2)), rng)
    texts[c[6]]["user"] = list(texts[c[5]]["user"])
    _plant(db, texts)
    _scores(db, {c[0]: 0.9, c[1]: 0.9, c[2]: 0.7, c[3]: 0.95, c[5]: 0.6, c[6]: 0.8})
    return db, c, texts


def _exact(texts, a: str, b: str, side: str) -> float:
    x, y = (set(shingles("\n".join(texts[k][side]), 5)) for k in (a, b))
    return len(x & y) / len(x | y)


def _clusters(db: Path) -> dict[str, set[frozenset[str]]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT side, list(conversation_id) FROM duplicate_clusters GROUP BY side, cluster_id"
        ).fetchall()
    found: dict[str, set[frozenset[str]]] = {"assistant": set(), "user": set()}
    for side, members in rows:
        found[side].add(frozenset(members))
    return found


def test_the_planted_levels_are_what_the_test_says(planted):
    _, c, texts = planted
    levels = [_exact(texts, c[0], c[i], "assistant") for i in (1, 2, 3, 4, 7)]
    assert levels[0] == 1.0 and 0.85 < levels[1] < 0.95 and 0.55 < levels[2] < 0.7
    assert levels[3] < 0.4 and levels[4] < 0.05


@pytest.mark.parametrize(
    ("threshold", "assistant", "user"),
    [
        (0.8, [[0, 1, 2]], [[0, 1, 2], [5, 6]]),
        (0.5, [[0, 1, 2, 3]], [[0, 1, 2, 3], [5, 6]]),
    ],
)
def test_planted_near_duplicates_cluster_per_side_at_each_threshold(
    planted, tmp_path, threshold, assistant, user
):
    db, c, _ = planted
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    summary = dedup_corpus(copy, DedupSettings(threshold=threshold))
    expected = {
        "assistant": {frozenset(c[i] for i in g) for g in assistant},
        "user": {frozenset(c[i] for i in g) for g in user},
    }
    assert _clusters(copy) == expected
    counts = {s.side: (s.conversations, s.clusters, s.in_clusters) for s in summary.sides}
    assert counts["assistant"] == (10, len(assistant), sum(map(len, assistant)))
    assert counts["user"] == (10, len(user), sum(map(len, user)))
    with duckdb.connect(str(copy), read_only=True) as conn:
        assert conn.execute("SELECT DISTINCT threshold FROM duplicate_clusters").fetchall() == [
            (threshold,)
        ]


def test_the_kept_member_has_the_highest_score_then_the_lowest_id(planted, tmp_path):
    db, c, _ = planted
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    dedup_corpus(copy, DedupSettings(threshold=0.8))
    with duckdb.connect(str(copy), read_only=True) as conn:
        kept = dict(
            conn.execute(
                "SELECT side || ':' || min(conversation_id), any_value(cluster_id) "
                "FROM duplicate_clusters GROUP BY side, cluster_id"
            ).fetchall()
        )
        similarity = dict(
            conn.execute(
                "SELECT conversation_id, similarity FROM duplicate_clusters "
                "WHERE side = 'assistant'"
            ).fetchall()
        )
    # c0 and c1 tie at 0.9 above c2's 0.7: the lower id; c6 (0.8) above c5 (0.6)
    assert kept == {f"assistant:{c[0]}": c[0], f"user:{c[0]}": c[0], f"user:{c[5]}": c[6]}
    assert similarity[c[0]] == 1.0 and similarity[c[1]] == 1.0 and 0.8 <= similarity[c[2]] < 1.0

    # at 0.5 c3 joins, and its 0.95 makes it the kept member
    dedup_corpus(copy, DedupSettings(threshold=0.5))
    with duckdb.connect(str(copy), read_only=True) as conn:
        assert conn.execute(
            "SELECT DISTINCT cluster_id FROM duplicate_clusters WHERE conversation_id = ?",
            [c[0]],
        ).fetchall() == [(c[3],)]


def test_an_unjudged_member_is_kept_only_after_the_judged_ones():
    matrix = np.zeros((3, 16), dtype=np.uint32)  # three identical signatures
    ids = ["a", "b", "c"]
    members = clusters("assistant", ids, matrix, {"b": 0.1, "c": 0.1}, 0.8)
    assert {m.conversation_id: m.cluster_id for m in members} == {"a": "b", "b": "b", "c": "b"}


def test_dedup_drops_exactly_the_non_kept_members_and_records_them(planted, tmp_path):
    db, c, _ = planted
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    out = tmp_path / "data"
    built = rapport_in_process(
        "dataset", "build", "--db", str(copy), "--out", str(out), "--format", "jsonl",
        "--validation", "0", "--test", "0", "--dedup", "0.8",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "3 as near-duplicates" in built.stdout
    kept = {json.loads(line)["conversation_id"] for line in (out / "train.jsonl").open()}
    assert kept == set(c) - {c[1], c[2], c[5]}
    with duckdb.connect(str(copy), read_only=True) as conn:
        rows = conn.execute(
            "SELECT conversation_id, detail FROM dataset_exclusions "
            "WHERE reason = 'duplicate' AND output = ? ORDER BY 1",
            [str(out.resolve())],
        ).fetchall()
    assert [r[0] for r in rows] == [c[1], c[2], c[5]]
    assert rows[0][1] == f"kept {c[0]} (assistant side, similarity 1.000)"
    assert rows[2][1] == f"kept {c[6]} (user side, similarity 1.000)"
    card = (out / "README.md").read_text()
    assert "as near-duplicates: 3" in card and "3 of 10 conversations left out (--dedup 0.8" in card

    without = tmp_path / "all"
    plain = rapport_in_process(
        "dataset", "build", "--db", str(copy), "--out", str(without), "--format", "jsonl",
        "--validation", "0", "--test", "0",
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert (
        len({json.loads(line)["conversation_id"] for line in (without / "train.jsonl").open()})
        == 10
    )
    assert "not removed (no --dedup)" in (without / "README.md").read_text()


def _rows(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(
            "SELECT conversation_id, side, cluster_id, similarity FROM duplicate_clusters "
            "ORDER BY ALL"
        ).fetchall()


def test_a_grown_corpus_hashes_only_its_new_conversations_and_clusters_as_a_full_pass(
    planted, tmp_path
):
    db, c, texts = planted
    grown = tmp_path / "grown.duckdb"
    shutil.copy(db, grown)
    first = dedup_corpus(grown, DedupSettings())
    assert first.hashed == 10
    with duckdb.connect(str(grown), read_only=True) as conn:
        stamped = conn.execute("SELECT max(created_at) FROM minhash_signatures").fetchone()[0]
    generate(GenerateRequest(db=grown, count=3, backend="simulated", seed=6, turns=EXCHANGES))
    new = [cid for cid in _ids(grown) if cid not in c]
    assert len(new) == 3
    _plant(grown, {new[0]: {side: list(texts[c[0]][side]) for side in SIDES}})  # one more copy

    again = dedup_corpus(grown, DedupSettings())
    assert again.hashed == 3
    with duckdb.connect(str(grown), read_only=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM minhash_signatures WHERE created_at > ?", [stamped]
        ).fetchone()[0] == 3 * len(SIDES)
    assert frozenset([c[0], c[1], c[2], new[0]]) in _clusters(grown)["assistant"]

    full = tmp_path / "full.duckdb"
    shutil.copy(grown, full)
    with duckdb.connect(str(full)) as conn:
        conn.execute("DELETE FROM minhash_signatures")
    assert dedup_corpus(full, DedupSettings()).hashed == 13
    assert _rows(full) == _rows(grown)


def test_hashing_in_worker_processes_gives_the_same_signatures(planted, tmp_path, monkeypatch):
    db, _, _ = planted
    one, pooled = tmp_path / "one.duckdb", tmp_path / "pooled.duckdb"
    shutil.copy(db, one)
    shutil.copy(db, pooled)
    dedup_corpus(one, DedupSettings())
    monkeypatch.setattr(dedup_stage, "DEDUP_BATCH_CONVERSATIONS", 4)  # 3 batches, 2 workers
    assert dedup_corpus(pooled, DedupSettings()).hashed == 10
    query = "SELECT conversation_id, side, signature FROM minhash_signatures ORDER BY ALL"
    with (
        duckdb.connect(str(one), read_only=True) as a,
        duckdb.connect(str(pooled), read_only=True) as b,
    ):
        assert a.execute(query).fetchall() == b.execute(query).fetchall()
    assert _rows(one) == _rows(pooled)


def test_stats_duplicates_prints_clusters_and_the_share_per_side(planted, tmp_path):
    db, c, _ = planted
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    shown = rapport_in_process("stats", "--db", str(copy), "--duplicates")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "Near-duplicates (estimated Jaccard ≥ 0.8" in out
    assert "Near-duplicate clusters, assistant side" in out and c[0] in out and c[6] in out
    assert "30.00%" in out and "50.00%" in out  # 3 of 10 assistant sides, 5 of 10 user sides
    with duckdb.connect(str(copy), read_only=True) as conn:
        start = conn.execute(
            "SELECT left(content, 40) FROM messages WHERE conversation_id = ? "
            "AND role = 'assistant' ORDER BY turn_index LIMIT 1",
            [c[0]],
        ).fetchone()[0]
    assert start in out
    lower = rapport_in_process("stats", "--db", str(copy), "--duplicates", "--threshold", "0.5")
    assert lower.returncode == 0 and "40.00%" in lower.stdout


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "abc", "nan"])
def test_bad_thresholds_are_one_line(planted, tmp_path, value):
    db, _, _ = planted
    for args in (
        ("stats", "--db", str(db), "--duplicates", "--threshold", value),
        ("dataset", "build", "--db", str(db), "--out", str(tmp_path / "x"), "--dedup", value),
    ):
        outcome = rapport_in_process(*args)
        assert outcome.returncode == 2, outcome
        assert len(error_lines(outcome)) == 1 and "Traceback" not in outcome.stderr
        assert ("--threshold" if args[0] == "stats" else "--dedup") in outcome.stderr
    assert not (tmp_path / "x").exists()


def test_stats_duplicates_refuses_missing_empty_foreign_and_busy_databases(planted, tmp_path):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as conn:
        conn.execute("CREATE TABLE people (name VARCHAR)")
    before = foreign.read_bytes()
    for path, words in (
        (tmp_path / "missing.duckdb", "no such database"),
        (empty, "empty database"),
        (foreign, "not a Rapport"),
    ):
        outcome = rapport_in_process("stats", "--db", str(path), "--duplicates")
        assert outcome.returncode == 2 and len(error_lines(outcome)) == 1, outcome
        assert words in outcome.stderr
    assert not (tmp_path / "missing.duckdb").exists() and foreign.read_bytes() == before
    db, _, _ = planted
    busy = tmp_path / "busy.duckdb"
    shutil.copy(db, busy)
    with exclusive_run(busy):
        outcome = rapport_in_process("stats", "--db", str(busy), "--duplicates")
    assert outcome.returncode == 2 and len(error_lines(outcome)) == 1
    assert "another rapport run is writing" in outcome.stderr


def test_threshold_without_duplicates_is_refused(planted):
    db, _, _ = planted
    outcome = rapport_in_process("stats", "--db", str(db), "--threshold", "0.8")
    assert outcome.returncode == 2 and "--threshold goes with --duplicates" in outcome.stderr


@pytest.mark.slow
def test_bench_dedup_smoke_finds_every_planted_group_and_hashes_only_the_growth(tmp_path):
    from tests.conftest import rapport

    outcome = rapport("bench", "dedup", "--smoke", "--out", str(tmp_path))
    assert outcome.returncode == 0, outcome.stderr
    report = json.loads((tmp_path / "dedup.json").read_text())
    recovery = report["recovery"]
    assert recovery["planted"] > 0
    assert recovery["found_exactly"] == {
        "assistant": recovery["planted"],
        "user": recovery["planted"],
    }
    assert recovery["other_clusters"] == {"assistant": 0, "user": 0}
    full, grown = report["full"], report["incremental"]
    assert full["hashed"] == full["conversations"]
    assert grown["hashed"] == grown["conversations"] - full["conversations"] > 0
    assert full["peak_rss_mb"] > 0 and "rapport bench dedup" in outcome.stdout
