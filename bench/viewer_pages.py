"""How long `rapport view`'s pages take over a large corpus (default 100,000 conversations).

A small judged corpus is made with the simulated backend and judges, then copied under new ids
by SQL until it holds `--conversations` (each copy with its scenario, messages, verdicts and
assessments), so the file is what `generate` + `judge` would leave, in seconds. `rapport view`
then serves it in its own process and each page is fetched `--repeat` times over HTTP; the
median and the slowest are written to bench/results/viewer_pages.json.

    python -m rapport.bench.viewer_pages --out /tmp/viewer-bench [--conversations 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb

from rapport.store.database import connect_for_reading

SEED_CONVERSATIONS = 50
REVIEWED = 1_000
PAGES = (
    ("overview", "/"),
    ("list, first page", "/conversations"),
    ("list, page 1000", "/conversations?page=1000"),
    ("list, failed, by score", "/conversations?passed=no&sort=score&order=desc"),
    ("list, topic + persona + score range", "/conversations?topic={topic}&persona={persona}"
     "&score_min=0.2&score_max=0.9"),
    ("list, failed criterion", "/conversations?failed={criterion}"),
    ("list, full-text search", "/conversations?q=partner"),
    ("one conversation", "/c/{conversation}"),
    ("judge vs people", "/agreement"),
)  # fmt: skip
COPIED = ("scenarios", "conversations", "messages", "verdicts", "assessments")


def _rapport(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "rapport", *args], check=True, capture_output=True)


def build_corpus(db: Path, conversations: int, turns: int) -> None:
    seed = db.with_name("seed.duckdb")
    for path in (db, seed):
        path.unlink(missing_ok=True)
    _rapport("generate", "--db", str(seed), "--count", str(SEED_CONVERSATIONS), "--turns",
             str(turns), "--backend", "simulated")  # fmt: skip
    config = db.with_name("judges.yaml")
    config.write_text(
        "judges:\n  - id: a\n    backend: {provider: simulated}\n"
        "  - id: b\n    backend: {provider: simulated, quality: 0.95}\npass_rule: mean\n"
    )
    _rapport("judge", "--db", str(seed), "--config", str(config))
    seed.rename(db)
    copies = -(-conversations // SEED_CONVERSATIONS) - 1
    connect_for_reading(db).close()  # the schema of this checkout (human_verdicts) first
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE TEMP TABLE copies AS SELECT range AS k FROM range(1, ?)", [copies + 1])
        for table in COPIED:
            columns = [row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()]
            renamed = {
                "conversation_id": "conversation_id || '-' || k",
                "scenario_id": "scenario_id || '-' || k",
                "scenario_index": f"scenario_index + k * {SEED_CONVERSATIONS}",
            }
            select = ", ".join(renamed.get(column, column) for column in columns)
            conn.execute(f"INSERT INTO {table} SELECT {select} FROM {table}, copies")
        # people's reviews of the first REVIEWED conversations: judge a's answers, one in five
        # turned, and a pass/fail, so the judge-vs-people page has figures to compute
        conn.execute(
            """
            INSERT INTO human_verdicts
            SELECT conversation_id, 'bench', criterion_id,
                   CASE WHEN hash(conversation_id || criterion_id) % 5 = 0 THEN
                        CASE answer WHEN 'YES' THEN 'NO' ELSE 'YES' END ELSE answer END,
                   NULL, now()
            FROM verdicts WHERE judge_id = 'a'
              AND conversation_id IN (SELECT conversation_id FROM conversations
                                      ORDER BY conversation_id LIMIT ?)
            UNION ALL
            (SELECT conversation_id, 'bench', 'overall',
                    CASE WHEN hash(conversation_id) % 4 = 0 THEN 'NO' ELSE 'YES' END, NULL, now()
             FROM conversations ORDER BY conversation_id LIMIT ?)
            """,
            [REVIEWED, REVIEWED],
        )
        conn.execute("CHECKPOINT")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
        assert response.status == 200, url
    return time.perf_counter() - started


def measure(db: Path, repeat: int) -> dict[str, dict[str, float]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        topic = conn.execute("SELECT min(topic_category) FROM by_topic").fetchone()[0]
        attribute, value = conn.execute(
            "SELECT a.key, a.value ->> '$' FROM scenarios s "
            "CROSS JOIN json_each(s.persona -> '$.attributes') a LIMIT 1"
        ).fetchone()
        criterion = conn.execute("SELECT min(criterion_id) FROM verdicts").fetchone()[0]
        conversation = conn.execute("SELECT max(conversation_id) FROM conversations").fetchone()[0]
    fill = {"topic": topic, "persona": f"{attribute}%3D{value}", "criterion": criterion,
            "conversation": conversation}  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rapport", "view", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        results = {}
        for name, path in PAGES:
            url = base + path.format(**fill)
            fetch(url)  # warm: the first read after start loads the file's metadata
            times = [fetch(url) for _ in range(repeat)]
            results[name] = {
                "median_s": round(statistics.median(times), 4),
                "max_s": round(max(times), 4),
            }
            print(f"{name:40s} median {results[name]['median_s']:.3f} s, max "
                  f"{results[name]['max_s']:.3f} s", flush=True)  # fmt: skip
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the corpus")
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=5, help="exchanges per conversation")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="measure the corpus already there")
    parser.add_argument("--results", type=Path, default=Path("bench/results/viewer_pages.json"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / "corpus.duckdb"
    if not (args.reuse and db.exists()):
        started = time.perf_counter()
        build_corpus(db, args.conversations, args.turns)
        print(f"corpus built in {time.perf_counter() - started:.1f} s", flush=True)
    with duckdb.connect(str(db), read_only=True) as conn:
        conversations, messages, verdicts = conn.execute(
            "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages), "
            "(SELECT count(*) FROM verdicts)"
        ).fetchone()
    print(f"{conversations:,} conversations, {messages:,} messages, {verdicts:,} verdicts")
    reviewed = REVIEWED
    pages = measure(db, args.repeat)
    record = {
        "conversations": conversations,
        "messages": messages,
        "verdicts": verdicts,
        "reviewed": reviewed,
        "file_mb": round(db.stat().st_size / 2**20, 1),
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "pages": pages,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {args.results}")


if __name__ == "__main__":
    main()
