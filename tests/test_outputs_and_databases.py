"""Outputs and databases that are never clobbered: output folders refused unless empty or
Rapport's own output of the same kind, built beside and renamed into place; DuckDB files
stamped as Rapport's, foreign ones refused untouched, older Rapport ones adopted; the dataset
card readable by huggingface_hub with no absolute paths."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import duckdb
import pytest
from huggingface_hub import DatasetCard

import rapport.training.dataset_build as dataset_build
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.store.database import Database
from rapport.store.output_folder import MANIFEST
from rapport.store.stamp import SCHEMA_VERSION, STAMP_TABLE, schema_sql
from tests.conftest import rapport, rapport_in_process

# Simulated judges and user too: should a refusal regress, the eval it lets through stays quick.
QUICK_EVAL = ("--judge", "simulated", "--user-backend", "simulated", "--turns", "2")


def rapport_here(*args: str) -> tuple[int, str, str]:
    """The `rapport` command line in this process: (exit code, stdout, stderr)."""
    result = rapport_in_process(*args)
    return result.returncode, result.stdout, result.stderr


def assert_one_line_error(code: int, err: str, *culprits: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for culprit in culprits:
        assert culprit in err, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tables(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return [
            row[0]
            for row in conn.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
        ]


def stamp_of(path: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return dict(conn.execute(f"SELECT key, value FROM {STAMP_TABLE}").fetchall())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("corpus") / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=16, backend="simulated", seed=2, turns=3))
    judge_corpus(JudgeRequest(db=db, judges=("simulated:quality=0.95",)))
    return db


@pytest.fixture
def foreign_db(tmp_path) -> Path:
    """Somebody else's DuckDB file, with a `messages` table of its own."""
    path = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE messages (id INTEGER, body VARCHAR)")
        conn.execute("INSERT INTO messages VALUES (1, 'keep me')")
    return path


# ---- databases -------------------------------------------------------------------------------


def test_a_new_database_is_stamped_with_its_schema_and_rapport_versions(db_path):
    Database(db_path).initialise()
    stamp = stamp_of(db_path)
    assert stamp["schema_version"] == str(SCHEMA_VERSION)
    assert stamp["rapport_version"] and stamp["schema_fingerprint"]


def test_a_stamped_database_is_left_byte_for_byte_as_it_is(db_path):
    Database(db_path).initialise()
    before = digest(db_path)
    Database(db_path).initialise()  # what every writing command does first
    assert digest(db_path) == before


def test_the_schema_is_created_in_one_transaction(db_path, monkeypatch):
    import rapport.store.database as store_database

    def broken_views(name: str) -> str:
        return (
            "CREATE VIEW broken AS SELECT * FROM no_such_table"
            if name == "views.sql"
            else (schema_sql(name))
        )

    monkeypatch.setattr(store_database, "schema_sql", broken_views)
    with pytest.raises(Exception, match="cannot create schema"):
        Database(db_path).initialise()
    assert tables(db_path) == []  # no table without its views and stamp


@pytest.mark.parametrize(
    "command",
    [
        ("generate", "--db", "{db}", "--count", "2", "--backend", "simulated", "--quiet"),
        ("judge", "--db", "{db}", "--judge", "simulated"),
        ("stats", "--db", "{db}"),
        ("sql", "--db", "{db}", "SELECT 1"),
        ("report", "--db", "{db}", "--out", "{tmp}/report"),
        ("dataset", "build", "--db", "{db}", "--out", "{tmp}/data"),
        (
            "eval",
            "--db",
            "{db}",
            "--scenarios",
            "1",
            "--baseline",
            "simulated",
            "--candidate",
            "simulated",
            *QUICK_EVAL,
        ),
    ],
    ids=lambda command: command[0],
)
def test_a_foreign_duckdb_file_is_refused_and_left_untouched(command, foreign_db, tmp_path):
    before, listed = digest(foreign_db), tables(foreign_db)
    args = [part.format(db=foreign_db, tmp=tmp_path) for part in command]
    code, _, err = rapport_here(*args)
    assert_one_line_error(code, err, str(foreign_db), "not a Rapport database")
    assert digest(foreign_db) == before and tables(foreign_db) == listed == ["messages"]
    assert not (tmp_path / "report").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "command", [("stats",), ("sql", "SELECT 1"), ("report", "--out", "{tmp}/report")]
)
def test_read_only_commands_never_create_a_missing_database(command, tmp_path):
    missing = tmp_path / "missing.duckdb"
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    code, _, err = rapport_here(args[0], "--db", str(missing), *args[1:])
    assert_one_line_error(code, err, str(missing))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_read_only_commands_refuse_an_empty_duckdb_file(tmp_path):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    before = digest(empty)
    code, _, err = rapport_here("stats", "--db", str(empty))
    assert_one_line_error(code, err, str(empty), "not a Rapport corpus")
    assert digest(empty) == before


def test_a_database_from_a_newer_rapport_is_refused(db_path):
    Database(db_path).initialise()
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(f"UPDATE {STAMP_TABLE} SET value = '99' WHERE key = 'schema_version'")
    before = digest(db_path)
    code, _, err = rapport_here("judge", "--db", str(db_path))
    assert_one_line_error(code, err, str(db_path), "newer Rapport", "upgrade")
    assert digest(db_path) == before


def test_stats_on_a_database_with_nothing_generated_yet_shows_empty_figures(db_path):
    Database(db_path).initialise()  # what a run interrupted right after planning leaves, at least
    code, out, err = rapport_here("stats", "--db", str(db_path))
    assert code == 0, err
    assert "Conversations by status" in out


def test_a_changed_schema_file_is_applied_to_a_stamped_database_on_its_next_open(db_path):
    Database(db_path).initialise()
    with duckdb.connect(str(db_path)) as conn:  # as if stamped before status_counts existed
        conn.execute("DROP VIEW status_counts")
        conn.execute(f"UPDATE {STAMP_TABLE} SET value = 'older' WHERE key = 'schema_fingerprint'")
    code, out, err = rapport_here("stats", "--db", str(db_path))
    assert code == 0, err
    assert "Conversations by status" in out
    assert stamp_of(db_path)["schema_fingerprint"] != "older"


def _as_first_release(db: Path) -> None:
    """Turn a corpus into what Rapport's first release left: no stamp, `meta.schema_version`
    '1', only the first tables and columns, no views."""
    with duckdb.connect(str(db)) as conn:
        views = conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        for (view,) in views:
            conn.execute(f"DROP VIEW {view}")
        later = {"gateway_stats", "verdicts", "judge_failures", "assessments", "eval_runs",
                 "eval_conversations", "examples", "iterations", STAMP_TABLE}  # fmt: skip
        for table in later:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute("ALTER TABLE scenarios DROP COLUMN held_out")
        conn.execute("ALTER TABLE plans DROP COLUMN purpose")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', '1')")


def test_an_older_unstamped_rapport_database_is_adopted_and_stamped(tmp_path):
    db = tmp_path / "old.duckdb"
    generate(GenerateRequest(db=db, count=4, backend="simulated", seed=5, turns=2))
    _as_first_release(db)
    with duckdb.connect(str(db), read_only=True) as conn:
        messages = conn.execute("SELECT * FROM messages ORDER BY ALL").fetchall()
    code, out, err = rapport_here("stats", "--db", str(db))
    assert code == 0, err
    assert "Conversations by status" in out and "complete" in out
    assert stamp_of(db)["schema_version"] == str(SCHEMA_VERSION)
    assert {"assessments", "iterations", STAMP_TABLE} <= set(tables(db))
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT * FROM messages ORDER BY ALL").fetchall() == messages
    code, _, err = rapport_here("judge", "--db", str(db), "--judge", "simulated")
    assert code == 0, err


def test_a_file_with_rapport_tables_and_others_is_not_taken_for_an_older_rapport(tmp_path):
    db = tmp_path / "mixed.duckdb"
    generate(GenerateRequest(db=db, count=2, backend="simulated", seed=5, turns=2))
    _as_first_release(db)
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    before = digest(db)
    code, _, err = rapport_here("judge", "--db", str(db))
    assert_one_line_error(code, err, str(db), "not a Rapport database")
    assert digest(db) == before


# ---- output folders --------------------------------------------------------------------------


def _build(corpus: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return rapport_here("dataset", "build", "--db", str(corpus), "--out", str(out), *extra)


def test_a_non_empty_foreign_folder_is_refused_and_left_untouched(corpus, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my own notes")
    (out / "train.parquet").write_bytes(b"not yours")
    before = snapshot(out)
    code, _, err = _build(corpus, out, "--format", "jsonl")
    assert_one_line_error(code, err, str(out), "--overwrite")
    assert snapshot(out) == before


def test_overwrite_replaces_a_foreign_folder_whole(corpus, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my own notes")
    code, _, err = _build(corpus, out, "--format", "jsonl", "--overwrite")
    assert code == 0, err
    assert "my own notes" not in (out / "README.md").read_text()
    written = {p.name for p in out.iterdir()}
    assert {MANIFEST, "README.md", "train.jsonl"} <= written
    assert written <= {MANIFEST, "README.md", "train.jsonl", "validation.jsonl", "test.jsonl"}


def test_a_previous_build_of_the_same_format_is_replaced_without_asking(corpus, tmp_path):
    out = tmp_path / "data"
    assert _build(corpus, out, "--format", "parquet")[0] == 0
    code, _, err = _build(corpus, out, "--format", "parquet", "--seed", "9")
    assert code == 0, err
    assert '"seed": 9' in (out / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_previous_build_of_another_format_is_refused(corpus, tmp_path):
    out = tmp_path / "data"
    assert _build(corpus, out, "--format", "parquet")[0] == 0
    before = snapshot(out)
    code, _, err = _build(corpus, out, "--format", "jsonl")
    assert_one_line_error(code, err, "dataset:parquet", "dataset:jsonl")
    assert snapshot(out) == before


def test_a_file_added_to_a_previous_build_is_not_clobbered(corpus, tmp_path):
    out = tmp_path / "data"
    assert _build(corpus, out, "--format", "jsonl")[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = _build(corpus, out, "--format", "jsonl")
    assert_one_line_error(code, err, "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("previous", [False, True], ids=["new folder", "previous build"])
def test_an_interrupted_build_leaves_the_output_complete_or_absent(
    previous, corpus, tmp_path, monkeypatch
):
    out = tmp_path / "data"
    if previous:
        assert _build(corpus, out, "--format", "jsonl")[0] == 0
    before = snapshot(out) if previous else None
    real_write = dataset_build._write

    def write_then_interrupt(*args, **kwargs):
        real_write(*args, **kwargs)  # the splits are on disk, the card is not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset_build, "_write", write_then_interrupt)
    code, _, _ = _build(corpus, out, "--format", "jsonl", "--slice-every", "2")
    assert code != 0
    if previous:
        assert snapshot(out) == before  # the previous build, whole
    else:
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["data"] if previous else [])


@pytest.mark.parametrize(
    "command",
    [
        ("dataset", "build", "--db", "{db}"),
        ("report", "--db", "{db}"),
        (
            "eval",
            "--db",
            "{db}",
            "--scenarios",
            "1",
            "--baseline",
            "simulated",
            "--candidate",
            "simulated",
            *QUICK_EVAL,
        ),
    ],
    ids=lambda command: command[0],
)
def test_out_that_is_an_existing_file_is_refused(command, corpus, tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("precious")
    args = [part.replace("{db}", str(corpus)) for part in command]
    code, _, err = rapport_here(*args, "--out", str(target))
    assert_one_line_error(code, err, str(target), "is a file")
    assert target.read_text() == "precious"


def test_overwrite_never_deletes_the_folder_holding_the_database(corpus, tmp_path):
    db = tmp_path / "corpus.duckdb"
    shutil.copy(corpus, db)
    before = snapshot(tmp_path)
    code, _, err = _build(db, tmp_path, "--overwrite")
    assert_one_line_error(code, err, str(db))
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_report_refuses_a_foreign_folder_and_replaces_its_own(corpus, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "draft.md").write_text("mine")
    code, _, err = rapport_here("report", "--db", str(corpus), "--out", str(out))
    assert_one_line_error(code, err, str(out), "--overwrite")
    assert snapshot(out) == {"draft.md": b"mine"}
    (out / "draft.md").unlink()
    for _ in range(2):  # an empty folder, then its own report: both fine
        code, _, err = rapport_here("report", "--db", str(corpus), "--out", str(out))
        assert code == 0, err
    assert (out / "report.md").read_text().startswith("# Rapport corpus report")


def test_eval_refuses_a_foreign_out_folder_before_playing_anything(corpus, tmp_path):
    db = tmp_path / "corpus.duckdb"
    shutil.copy(corpus, db)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    before = digest(db)
    code, _, err = rapport_here("eval", "--db", str(db), "--scenarios", "2", "--baseline",
        "simulated", "--candidate", "simulated", *QUICK_EVAL, "--out", str(out),
    )  # fmt: skip
    assert_one_line_error(code, err, str(out), "--overwrite")
    assert digest(db) == before and snapshot(out) == {"notes.md": b"mine"}


# ---- tokenizer and hub -----------------------------------------------------------------------


def test_a_missing_tokenizer_folder_is_named_as_such(corpus, tmp_path):
    missing = tmp_path / "nonexistent"
    code, _, err = _build(corpus, tmp_path / "d", "--tokenizer", str(missing))
    assert_one_line_error(code, err, f"--tokenizer {missing}", "no such folder")
    assert "repo" not in err.lower()


@pytest.mark.parametrize(
    ("content", "expected"),
    [('{"version": "1.0", "model"', "tokenizer.json is not valid JSON"),
     ('{"version": "1.0", "model": {"type": "Nope"}}', "cannot load a tokenizer")],
    ids=["truncated JSON", "not a tokenizer"],
)  # fmt: skip
def test_an_invalid_tokenizer_json_is_one_line(content, expected, corpus, tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(content)
    code, _, err = _build(corpus, tmp_path / "d", "--tokenizer", str(folder))
    assert_one_line_error(code, err, f"--tokenizer {folder}", expected)
    assert not (tmp_path / "d").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_push_to_hub_without_a_network_is_one_line(corpus, tmp_path):
    out = tmp_path / "data"
    result = rapport(
        "dataset", "build", "--db", str(corpus), "--out", str(out), "--format", "jsonl",
        "--push-to-hub", "me/data",
        env={"HF_TOKEN": "hf_dummy", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
             "HF_HUB_OFFLINE": "0"},
    )  # fmt: skip
    assert_one_line_error(result.returncode, result.stderr, "--push-to-hub me/data", str(out))
    assert (out / "train.jsonl").exists()  # the local dataset is complete; the push can be retried


# ---- the dataset card ------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["hf", "parquet", "jsonl"])
def test_the_card_loads_through_huggingface_hub_with_its_metadata(output_format, corpus, tmp_path):
    out = tmp_path / "data"
    code, _, err = _build(corpus, out, "--format", output_format,
                          "--license", "cc-by-4.0", "--validation", "0.2", "--test", "0.2")  # fmt: skip
    assert code == 0, err
    card = DatasetCard.load(out / "README.md")
    data = card.data
    assert data.license == "cc-by-4.0"
    assert data.pretty_name and "therapy" in data.pretty_name
    assert data.size_categories == ["n<1K"]
    splits = {s["name"]: s["num_examples"] for s in data.dataset_info["splits"]}
    (config,) = data.configs
    assert config["config_name"] == "default"
    for entry in config["data_files"]:  # every split's files exist where the card says
        assert list(out.glob(entry["path"])), entry
    assert {entry["split"] for entry in config["data_files"]} == set(splits) >= {"train"}
    if output_format == "jsonl":
        assert splits == {s: len((out / f"{s}.jsonl").read_text().splitlines()) for s in splits}
    assert json.loads((out / MANIFEST).read_text())["kind"] == f"dataset:{output_format}"


def test_the_card_publishes_file_names_not_absolute_paths(corpus, tmp_path):
    out = tmp_path / "data"
    assert _build(corpus, out, "--format", "jsonl")[0] == 0
    card = (out / "README.md").read_text()
    assert str(tmp_path) not in card and str(corpus.parent) not in card
    settings = json.loads(card.split("```json")[1].split("```")[0])
    assert settings["db"] == corpus.name and settings["out"] == out.name
