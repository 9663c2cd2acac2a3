"""Replies cut by the length limit: retried once with a larger budget, then kept and marked
(`messages.finish_reason`); counted live and by `rapport stats`; left out of datasets unless
`--keep-truncated`, the card saying how many. Real HTTP against a loopback server that cuts
replies at `max_tokens` with `finish_reason: length`."""

from __future__ import annotations

import anyio
import duckdb
from rich.console import Console

from rapport._live_table import progress_table
from rapport.config.constants import TRUNCATION_RETRY_FACTOR
from rapport.config.prices import load_prices
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.store.database import Database
from tests.conftest import TINY_DOMAIN, rapport_in_process
from tests.llama_like_server import ServerSettings, llama_like_server

REPLY_TOKENS = 20  # what the server would write given room
FITS_WHEN_DOUBLED = 12  # 12 cuts the reply, 24 holds it
NEVER_FITS = 4  # 4 and 8 both cut it
COUNT, TURNS = 2, 2


def _run_yaml(tmp_path, base_url: str, assistant_max_tokens: int):
    path = tmp_path / "run.yaml"
    path.write_text(
        f"domain: {TINY_DOMAIN}\nbackends:\n"
        f"  user_sim:\n    provider: openai\n    model: user\n    base_url: {base_url}\n"
        f"    max_tokens: 200\n"
        f"  assistant:\n    provider: openai\n    model: coach\n    base_url: {base_url}\n"
        f"    max_tokens: {assistant_max_tokens}\n"
    )
    return path


def _generate(db, tmp_path, assistant_max_tokens: int, display=None):
    with llama_like_server(ServerSettings(reply_tokens=REPLY_TOKENS)) as (base_url, log):
        summary = generate(
            GenerateRequest(
                db=db,
                count=COUNT,
                max_active=1,  # one conversation at a time: requests in a fixed order
                turns=TURNS,
                config=_run_yaml(tmp_path, base_url, assistant_max_tokens),
            ),
            display=display,
        )
    assert summary.complete == COUNT
    return log


def _rows(db, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_a_cut_reply_is_asked_once_more_with_a_larger_budget(db_path, tmp_path):
    log = _generate(db_path, tmp_path, FITS_WHEN_DOUBLED)
    budgets = [seen.max_tokens for seen in log.requests if seen.model == "coach"]
    doubled = FITS_WHEN_DOUBLED * TRUNCATION_RETRY_FACTOR
    assert budgets == [FITS_WHEN_DOUBLED, doubled] * COUNT * TURNS
    assert _rows(
        db_path, "SELECT role, finish_reason, count(*) FROM messages GROUP BY ALL ORDER BY 1"
    ) == [("assistant", "stop", COUNT * TURNS), ("user", "stop", COUNT * TURNS)]


def test_a_reply_still_cut_after_its_retry_is_kept_and_marked(db_path, tmp_path):
    log = _generate(db_path, tmp_path, NEVER_FITS)
    budgets = [seen.max_tokens for seen in log.requests if seen.model == "coach"]
    assert budgets == [NEVER_FITS, NEVER_FITS * TRUNCATION_RETRY_FACTOR] * COUNT * TURNS
    rows = _rows(
        db_path,
        "SELECT finish_reason, count(*), min(length(content)) FROM messages "
        "WHERE role = 'assistant' GROUP BY 1",
    )
    assert [(reason, n) for reason, n, _ in rows] == [("length", COUNT * TURNS)]
    assert rows[0][2] > 0  # kept, text and all


def test_the_live_display_and_stats_count_truncated_turns(db_path, tmp_path):
    seen = []

    async def capture(run) -> None:
        seen.append((run.progress, run.gateways))
        await anyio.sleep_forever()

    _generate(db_path, tmp_path, NEVER_FITS, display=capture)
    progress, gateways = seen[0]
    assert progress.truncated == COUNT * TURNS
    console = Console(record=True, width=200)
    console.print(progress_table(progress, gateways, load_prices(None)))
    assert f"{COUNT * TURNS * 2} turns ({COUNT * TURNS} truncated)" in console.export_text()
    stats = rapport_in_process("stats", "--db", str(db_path))
    assert stats.returncode == 0, stats.stderr
    section = stats.stdout.split("Truncated turns")[1].split("Gateways")[0]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in section.splitlines()]
    assert ["assistant", str(COUNT * TURNS), str(COUNT * TURNS)] in rows  # truncated, messages
    assert ["user", "0", str(COUNT * TURNS)] in rows


def _judged_corpus_with_a_cut_reply(db):
    """Every conversation passes; one reply (exchange 2 of the first conversation) was cut."""
    generate(GenerateRequest(db=db, count=4, turns=2, backend="simulated", domain=TINY_DOMAIN))
    judge_corpus(JudgeRequest(db=db, judges=("simulated:quality=1.0",)))
    cut = _rows(db, "SELECT min(conversation_id) FROM conversation_judgement WHERE passed")[0][0]
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "UPDATE messages SET finish_reason = 'length' "
            "WHERE conversation_id = ? AND role = 'assistant' AND exchange = 2",
            [cut],
        )
    passing = _rows(db, "SELECT count(*) FROM conversation_judgement WHERE passed")[0][0]
    return cut, passing


def _build(db, out, *extra: str):
    result = rapport_in_process(
        "dataset", "build", "--db", str(db), "--out", str(out), "--format", "jsonl",
        "--slice-every", "1", "--validation", "0", "--test", "0", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    examples = [line for line in (out / "train.jsonl").read_text().splitlines() if line]
    return examples, (out / "README.md").read_text()


def test_dataset_build_leaves_out_examples_with_a_cut_reply_and_the_card_says_so(db_path, tmp_path):
    cut, passing = _judged_corpus_with_a_cut_reply(db_path)
    examples, card = _build(db_path, tmp_path / "data")
    # Slices end at exchanges 1 and 2; only the one ending after the cut reply is left out.
    assert len(examples) == passing * 2 - 1
    assert sum(f'"{cut}:2"' in line for line in examples) == 0
    assert sum(f'"{cut}:1"' in line for line in examples) == 1
    assert "cut by its token budget (finish reason `length`): 1, left out." in card


def test_keep_truncated_keeps_them_and_the_card_says_so(db_path, tmp_path):
    cut, passing = _judged_corpus_with_a_cut_reply(db_path)
    examples, card = _build(db_path, tmp_path / "data", "--keep-truncated")
    assert len(examples) == passing * 2
    assert sum(f'"{cut}:2"' in line for line in examples) == 1
    assert "cut by its token budget (finish reason `length`): 1, kept (--keep-truncated)." in card


def test_a_database_from_before_finish_reason_gains_the_column(db_path):
    """Opening a database of the schema before `messages.finish_reason` (its stamp's schema
    fingerprint older) adds the column, NULL for its old rows."""
    Database(db_path).initialise()
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("ALTER TABLE messages DROP COLUMN finish_reason")
        conn.execute("UPDATE rapport_meta SET value = 'older' WHERE key = 'schema_fingerprint'")
        conn.execute("INSERT INTO messages (conversation_id, turn_index, role, content, exchange, "
                     "final, created_at) VALUES ('c', 0, 'user', 'hi', 1, false, now())")  # fmt: skip
    Database(db_path).initialise()
    assert _rows(db_path, "SELECT content, finish_reason FROM messages") == [("hi", None)]
