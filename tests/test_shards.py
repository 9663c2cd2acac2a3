"""Shards: `generate --shard K/N` plays its part of a plan into a file of its own, and `rapport
merge` joins the shards into the corpus one process would have written (checked in SQL, with the
simulated backend, whose text depends only on the scenario)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import msgspec
import pytest

from rapport.cli.exit_codes import OK
from rapport.config.shards import Shard
from rapport.stages.generate import GenerateRequest, generate, generate_settings, prepare
from tests.conftest import TINY_DOMAIN, error_lines, rapport_in_process

COUNT, TURNS, SEED = 12, 2, 5
# What two corpora of one plan must share (run ids, timestamps and latencies differ per run).
SAME = {
    "plans": "SELECT * EXCLUDE (created_at) FROM {db}.plans",
    "scenarios": "SELECT * FROM {db}.scenarios",
    "conversations": "SELECT conversation_id, scenario_id, plan_id, scenario_index, target_turns, "
    "status, end_reason, num_messages, error FROM {db}.conversations",
    "messages": "SELECT conversation_id, turn_index, role, content, exchange, final, "
    "prompt_tokens, completion_tokens, backend, model, finish_reason, attempts "
    "FROM {db}.messages",
}
TABLES = ("plans", "scenarios", "conversations", "messages", "runs", "gateway_stats", "errors")


def _generate(db: Path, shard: Shard | None = None, **overrides) -> None:
    settings = {"count": COUNT, "turns": TURNS, "seed": SEED, **overrides}
    summary = generate(GenerateRequest(db=db, backend="simulated", shard=shard, **settings))
    assert summary.pending == 0 and summary.failed == 0


def _merge(out: Path, *shards: Path | str):
    return rapport_in_process("merge", "--out", str(out), *map(str, shards))


def _differences(first: Path, second: Path, below: int | None = None) -> dict[str, int]:
    """Rows of each compared table in one file and not the other (both ways); with `below`,
    of the plan's scenarios below that index only (an id ends in the 7-digit index)."""
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{first}' AS a (READ_ONLY)")
        conn.execute(f"ATTACH '{second}' AS b (READ_ONLY)")
        found = {}
        for table, sql in SAME.items():
            key = "scenario_id" if table == "scenarios" else "conversation_id"
            where = "" if below is None or table == "plans" else f" WHERE {key}[-7:]::INT < {below}"
            a, b = sql.format(db="a") + where, sql.format(db="b") + where
            found[table] = conn.execute(
                f"SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL {a}))"
            ).fetchone()[0]
    return found


def _rows(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("single") / "corpus.duckdb"
    _generate(db)
    return db


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shards")
    paths = [folder / f"shard-{k}.duckdb" for k in range(3)]
    for k, path in enumerate(paths):
        _generate(path, Shard(k, 3))
    return paths


@pytest.fixture(scope="module")
def merged(shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("merged") / "corpus.duckdb"
    result = _merge(out, str(shards[0].parent / "shard-*.duckdb"))  # a quoted glob
    assert result.returncode == 0, result.stderr
    return out


def _copy(path: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or path.name)
    shutil.copy(path, target)
    return target


def test_a_shard_plays_and_stores_only_its_own_scenarios(shards):
    with duckdb.connect(str(shards[1]), read_only=True) as conn:
        indices = conn.execute(
            "SELECT list(scenario_index ORDER BY scenario_index) FROM conversations"
        ).fetchone()[0]
        assert indices == [1, 4, 7, 10]
        assert conn.execute("SELECT count(*) FROM scenarios").fetchone() == (4,)
        assert conn.execute("SELECT shard_index, shard_count, count FROM shards").fetchall() == [
            (1, 3, COUNT)
        ]
        assert conn.execute("SELECT shard, status FROM runs").fetchall() == [("1/3", "finished")]


def test_the_command_line_says_which_shard_and_counts_its_share_only(tmp_path):
    db = tmp_path / "shard.duckdb"
    result = rapport_in_process(
        "generate", "--db", str(db), "--backend", "simulated", "--count", "7", "--turns", "2",
        "--shard", "2/3", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert " · shard 2/3 · 2/2 complete · " in result.stdout  # indices 2 and 5 of 0..6


def test_the_merge_of_three_shards_equals_the_single_process_corpus(single, merged):
    assert _differences(single, merged) == dict.fromkeys(SAME, 0)
    assert _rows(merged)["conversations"] == COUNT
    with duckdb.connect(str(merged), read_only=True) as conn:
        runs = conn.execute("SELECT shard, command FROM runs ORDER BY shard").fetchall()
        assert runs == [("0/3", "generate"), ("1/3", "generate"), ("2/3", "generate")]
        stats = conn.execute(
            "SELECT count(DISTINCT run_id), sum(requests) FROM gateway_stats"
        ).fetchone()
        assert stats == (3, 2 * TURNS * COUNT)  # each shard run's counters, kept
        assert conn.execute("SELECT shard_index FROM shards ORDER BY 1").fetchall() == [
            (0,),
            (1,),
            (2,),
        ]


def test_merging_the_same_shards_again_adds_nothing(shards, merged, tmp_path):
    out = _copy(merged, tmp_path)
    before = _rows(out)
    result = _merge(out, *shards)
    assert result.returncode == 0, result.stderr
    assert _rows(out) == before
    assert _differences(merged, out) == dict.fromkeys(SAME, 0)
    assert result.stdout.count("0 conversations added, 0 advanced, 0 messages, 0 runs") == 3


def _set_state(db: Path, scenario_index: int, status: str, messages: int) -> None:
    """The file as a run that got the conversation this far left it."""
    with duckdb.connect(str(db)) as conn:
        (conversation,) = conn.execute(
            "SELECT conversation_id FROM conversations WHERE scenario_index = ?", [scenario_index]
        ).fetchone()
        conn.execute(
            "DELETE FROM messages WHERE conversation_id = ? AND turn_index >= ?",
            [conversation, messages],
        )
        conn.execute(
            "UPDATE conversations SET status = ?, num_messages = ?, end_reason = NULL, "
            "completed_at = NULL WHERE conversation_id = ?",
            [status, messages, conversation],
        )


def _interrupt_after_first_exchange(db: Path, scenario_index: int) -> None:
    _set_state(db, scenario_index, "interrupted", 2)


@pytest.mark.parametrize(
    ("corpus", "shard", "kept"),
    [
        (("pending", 0), ("running", 1), ("running", 1)),
        (("interrupted", 2), ("failed", 1), ("failed", 1)),  # failed outranks running
        (("failed", 2), ("running", 3), ("failed", 2)),
        (("running", 1), ("interrupted", 3), ("interrupted", 3)),  # as far: the most turns
        (("interrupted", 3), ("running", 1), ("interrupted", 3)),
        (("failed", 3), ("complete", 2 * TURNS), ("complete", 2 * TURNS)),
    ],
    ids=lambda state: f"{state[0]}-{state[1]}",
)
def test_a_conversation_is_taken_from_the_file_where_it_got_furthest(
    shards, tmp_path, corpus, shard, kept
):
    earlier, later = _copy(shards[0], tmp_path, "a.duckdb"), _copy(shards[0], tmp_path, "b.duckdb")
    _set_state(earlier, 6, *corpus)
    if shard[0] != "complete":
        _set_state(later, 6, *shard)
    out = tmp_path / "corpus.duckdb"
    assert _merge(out, earlier).returncode == 0
    assert _merge(out, later).returncode == 0
    assert _conversation(out, 6) == kept
    with duckdb.connect(str(out), read_only=True) as conn:
        stored = conn.execute(
            "SELECT num_messages FROM conversations WHERE scenario_index = 6"
        ).fetchone()
    assert stored == (kept[1],)


def _conversation(db: Path, scenario_index: int) -> tuple[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(
            "SELECT c.status, count(m.turn_index) FROM conversations c "
            "LEFT JOIN messages m USING (conversation_id) WHERE c.scenario_index = ? "
            "GROUP BY c.status",
            [scenario_index],
        ).fetchone()


def test_a_resumed_and_extended_shard_merged_again_adds_only_what_is_new(single, shards, tmp_path):
    first = _copy(shards[0], tmp_path)
    _interrupt_after_first_exchange(first, 3)
    out = tmp_path / "corpus.duckdb"
    assert _merge(out, first, *shards[1:]).returncode == 0
    assert _conversation(out, 3) == ("interrupted", 2)

    _generate(first, Shard(0, 3), count=COUNT + 3)  # resumes index 3, adds index 12
    before = _rows(out)
    result = _merge(out, first, *shards[1:])
    assert result.returncode == 0, result.stderr
    assert f"{first}: 1 conversations added, 1 advanced" in result.stdout
    after = _rows(out)
    assert after["conversations"] == before["conversations"] + 1
    assert after["runs"] == before["runs"] + 1  # the resuming run; the others are not doubled
    assert _conversation(out, 3) == ("complete", 2 * TURNS)
    assert _conversation(out, 12) == ("complete", 2 * TURNS)
    assert _differences(single, out, below=COUNT) == dict.fromkeys(SAME, 0)
    assert _merge(out, first, *shards[1:]).returncode == 0
    assert _rows(out) == after


def test_a_shard_behind_the_corpus_changes_nothing(shards, merged, tmp_path):
    behind = _copy(shards[0], tmp_path, "behind.duckdb")
    _interrupt_after_first_exchange(behind, 3)
    out = _copy(merged, tmp_path)
    result = _merge(out, behind)
    assert result.returncode == 0, result.stderr
    assert _conversation(out, 3) == ("complete", 2 * TURNS)  # complete outranks interrupted
    assert "not merged yet" not in result.stdout
    assert _differences(merged, out) == dict.fromkeys(SAME, 0)


def test_the_merge_names_the_shards_not_merged_yet(shards, tmp_path):
    out = tmp_path / "corpus.duckdb"
    result = _merge(out, shards[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "not merged yet: shard 0/3, 2/3"


def test_merging_into_a_corpus_of_the_same_plan_adds_only_the_shards_runs(single, shards, tmp_path):
    out = _copy(single, tmp_path)
    before = _rows(out)
    result = _merge(out, *shards)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("0 conversations added, 0 advanced, 0 messages, 1 runs") == 3
    after = _rows(out)
    assert after == {
        **before,
        "runs": before["runs"] + 3,
        "gateway_stats": before["gateway_stats"] + 3,
    }
    assert _differences(single, out) == dict.fromkeys(SAME, 0)


def test_a_shards_errors_are_carried_once(shards, merged, tmp_path):
    shard = _copy(shards[2], tmp_path)
    with duckdb.connect(str(shard)) as conn:
        conn.execute(
            "INSERT INTO errors (run_id, conversation_id, turn_index, role, kind, message, "
            "created_at) SELECT run_id, conversation_id, 1, 'assistant', 'timeout', "
            "'no reply in 120 s', now() FROM conversations WHERE scenario_index = 5"
        )
    out = _copy(merged, tmp_path, "corpus.duckdb")
    for _ in range(2):
        assert _merge(out, shard).returncode == 0
    with duckdb.connect(str(out), read_only=True) as conn:
        errors = conn.execute("SELECT conversation_id[-7:], kind FROM errors").fetchall()
    assert errors == [("0000005", "timeout")]


JUDGE = "simulated:quality=0.9"


def test_shards_judged_as_they_complete_merge_to_the_single_corpus_judgements(tmp_path):
    single = tmp_path / "single.duckdb"
    _generate(single, count=4, judging="always", judges=(JUDGE,))
    shards = [tmp_path / f"shard-{k}.duckdb" for k in range(2)]
    for k, path in enumerate(shards):
        _generate(path, Shard(k, 2), count=4, judging="always", judges=(JUDGE,))
    out = tmp_path / "corpus.duckdb"
    assert _merge(out, *shards).returncode == 0
    assert _differences(single, out) == dict.fromkeys(SAME, 0)
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{single}' AS a (READ_ONLY)")
        conn.execute(f"ATTACH '{out}' AS b (READ_ONLY)")
        for table in ("verdicts", "assessments", "simulator_verdicts", "simulator_assessments"):
            a, b = (f"SELECT * EXCLUDE (created_at) FROM {db}.{table}" for db in "ab")
            rows = conn.execute(f"SELECT count(*) FROM ({b})").fetchone()[0]
            differ = conn.execute(f"SELECT count(*) FROM (({a} EXCEPT {b}) UNION ({b} EXCEPT {a}))")
            assert rows > 0 and differ.fetchone() == (0,), table


def _stored_messages(db: Path) -> int:
    """Messages in a file a run is writing (it lends the file to readers now and then)."""
    try:
        with duckdb.connect(str(db), read_only=True) as conn:
            return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except duckdb.Error:
        return 0


@pytest.mark.slow
def test_a_shard_merged_while_its_run_writes_it_is_completed_by_the_next_merge(tmp_path):
    shard = tmp_path / "shard-0.duckdb"
    run = subprocess.Popen(
        [sys.executable, "-m", "rapport", "generate", "--db", str(shard), "--count", "80",
         "--turns", "2", "--backend", "simulated:latency_ms=150", "--max-active", "4",
         "--shard", "0/2", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RAPPORT_STORE_LEND_EVERY_S": "0.3"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _stored_messages(shard) == 0 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    out = tmp_path / "corpus.duckdb"
    first = _merge(out, shard)
    run_was_going = run.poll() is None
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == OK, stderr
    assert first.returncode == 0, first.stderr
    assert run_was_going, "the run had ended before the merge: nothing was merged mid-run"
    second = _merge(out, shard)
    assert second.returncode == 0, second.stderr
    assert _differences(shard, out) == dict.fromkeys(SAME, 0)
    with duckdb.connect(str(out), read_only=True) as conn:
        assert conn.execute("SELECT status, shard FROM runs").fetchall() == [("finished", "0/2")]
        assert conn.execute("SELECT count(*) FROM conversations").fetchone() == (40,)


@pytest.mark.parametrize(
    ("other", "named"),
    [({"seed": SEED + 1}, f"seed {SEED + 1}"), ({"domain": TINY_DOMAIN}, "domain bike_repair")],
    ids=["seed", "domain"],
)
def test_shards_of_another_plan_are_refused_naming_the_file(shards, tmp_path, other, named):
    stranger = tmp_path / "stranger.duckdb"
    _generate(stranger, Shard(2, 3), count=3, **other)
    out = tmp_path / "corpus.duckdb"
    result = _merge(out, shards[0], stranger, shards[1])
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert str(stranger) in line and named in line and "another plan" in line
    assert not out.exists()


def test_a_corpus_of_another_plan_is_refused_as_out(shards, tmp_path):
    other = tmp_path / "other.duckdb"
    _generate(other, count=2, seed=SEED + 2)
    before = _rows(other)
    result = _merge(other, shards[0])
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert str(other) in line and f"seed {SEED + 2}" in line
    assert _rows(other) == before


def test_a_missing_shard_is_one_line(tmp_path):
    result = _merge(tmp_path / "corpus.duckdb", tmp_path / "missing.duckdb")
    assert result.returncode == 2
    assert error_lines(result) == [f"error: {tmp_path / 'missing.duckdb'}: no such shard file"]
    assert _merge(tmp_path / "corpus.duckdb", f"{tmp_path}/none-*.duckdb").returncode == 2


@pytest.mark.parametrize("spec", ["3/3", "a/b", "1/0", "1", "-1/3", "1/3/5", "²/3", ""])
def test_a_bad_shard_spec_is_one_line_and_exit_2(tmp_path, spec):
    db = tmp_path / "shard.duckdb"
    result = rapport_in_process(
        "generate", "--db", str(db), "--backend", "simulated", "--count", "3", "--shard", spec
    )
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert line.startswith(f"error: --shard {spec!r}:")
    assert not db.exists()


def test_stats_sql_judge_and_dataset_work_on_the_merged_corpus_as_on_the_single_one(
    single, merged, tmp_path
):
    corpora = [_copy(single, tmp_path, "single.duckdb"), _copy(merged, tmp_path, "merged.duckdb")]
    for db in corpora:
        stats = rapport_in_process("stats", "--db", str(db))
        assert stats.returncode == 0, stats.stderr
        assert "complete" in stats.stdout
        count = rapport_in_process(
            "sql", "--db", str(db), "--format", "csv",
            "SELECT count(*) AS n FROM corpus_conversations WHERE status = 'complete'",
        )  # fmt: skip
        assert count.stdout.split() == ["n", str(COUNT)]
        judged = rapport_in_process("judge", "--db", str(db), "--judge", "simulated:quality=0.9")
        assert judged.returncode == 0, judged.stderr
        dataset = rapport_in_process(
            "dataset",
            "build",
            "--db",
            str(db),
            "--out",
            str(tmp_path / db.stem),
            "--format",
            "jsonl",
        )
        assert dataset.returncode == 0, dataset.stderr
    for split in ("train", "validation", "test"):  # the same examples, in the same splits
        files = [(tmp_path / db.stem / f"{split}.jsonl").read_text() for db in corpora]
        assert files[0] == files[1], split
    assert (tmp_path / "merged" / "train.jsonl").read_text().count("\n") > 0
    with duckdb.connect() as conn:
        for name, db in zip(("a", "b"), corpora, strict=True):
            conn.execute(f"ATTACH '{db}' AS {name} (READ_ONLY)")
        judged = "SELECT conversation_id, judge_id, score, passed FROM {}.assessments"
        a, b = judged.format("a"), judged.format("b")
        assert conn.execute(f"SELECT count(*) FROM ({b})").fetchone() == (COUNT,)
        differ = conn.execute(f"SELECT count(*) FROM (({a} EXCEPT {b}) UNION ({b} EXCEPT {a}))")
        assert differ.fetchone() == (0,)


def _limits_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(
        "backends:\n"
        "  user_sim: {provider: simulated, rpm: 600, tpm: 90000, input_tpm: 1000, output_tpm: 2}\n"
        "  assistant: {provider: simulated, model: other, rpm: 300}\n"
        "judges:\n"
        "  - {id: j, backend: {provider: simulated, rpm: 100}}\n" + extra
    )
    return config


def _limits(tmp_path: Path, config: Path, shard: Shard | None):
    request = GenerateRequest(
        db=tmp_path / "limits.duckdb", count=COUNT, config=config, shard=shard,
        judging="configured",
    )  # fmt: skip
    generation = prepare(request)
    return (
        generation.gateways["user_sim"].limits,
        generation.gateways["assistant"].limits,
        generation.judges[0].gateway.limits,
    )


def test_each_shard_gets_its_share_of_every_configured_rate(tmp_path):
    user, assistant, judge = _limits(tmp_path, _limits_config(tmp_path), Shard(1, 3))
    assert (user.rpm, user.tpm, user.input_tpm, user.output_tpm) == (200, 30000, 333, 1)
    assert assistant.rpm == 100 and assistant.tpm is None
    assert judge.rpm == 33


def test_each_shard_gets_its_share_of_the_dollar_budget(tmp_path):
    config = _limits_config(tmp_path, "budget_usd: 12.0\n")
    request = GenerateRequest(db=tmp_path / "s.duckdb", count=COUNT, config=config)
    assert generate_settings(request).budget_usd == 12.0
    sharded = msgspec.structs.replace(request, shard=Shard(0, 4))
    assert generate_settings(sharded).budget_usd == 3.0


def test_each_replica_of_a_backend_gets_its_share_too(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "backends:\n"
        "  user_sim: {provider: simulated}\n"
        "  assistant:\n"
        "    provider: openai\n"
        "    model: local\n"
        "    rpm: 1000\n"
        "    replicas:\n"
        "      - {base_url: 'http://127.0.0.1:9001/v1', rpm: 90, tpm: 9000}\n"
        "      - {base_url: 'http://127.0.0.1:9002/v1', max_in_flight: 4}\n"
    )
    generation = prepare(
        GenerateRequest(db=tmp_path / "replicas.duckdb", count=COUNT, config=config,
                        shard=Shard(0, 4))
    )  # fmt: skip
    gateway = generation.gateways["assistant"]
    replicas = [
        (r.limits.rpm, r.limits.tpm, r.limits.max_in_flight) for r in gateway.backend.replicas
    ]
    assert gateway.limits.rpm == 250
    assert replicas == [(22, 2250, None), (None, None, 4)]


def test_shard_limits_full_keeps_the_whole_limit_and_no_shard_is_unchanged(tmp_path):
    full = _limits_config(tmp_path, "shard_limits: full\n")
    user, assistant, judge = _limits(tmp_path, full, Shard(1, 3))
    assert (user.rpm, user.tpm, assistant.rpm, judge.rpm) == (600, 90000, 300, 100)
    user, assistant, judge = _limits(tmp_path, _limits_config(tmp_path), None)
    assert (user.rpm, user.output_tpm, assistant.rpm, judge.rpm) == (600, 2, 300, 100)
