"""Does llama-cpp-python's prefix cache (LlamaCppConfig.prefix_cache_mb) shorten turns?

Plays the same conversations with the embedded SmolLM2 through `rapport generate`, cache off
and on, interleaved, and prints the mean turn latency per exchange from the stored messages.

    PYTHONPATH=$PWD python -m rapport.bench.llamacpp_prefix_cache --turns 6 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from rapport.stages.generate import GenerateRequest, generate


def _config(folder: Path, cache_mb: int, threads: int) -> Path:
    backend = f"{{provider: llamacpp, threads: {threads}, prefix_cache_mb: {cache_mb}}}"
    path = folder / "run.yaml"
    path.write_text(
        f"cache: {'true' if cache_mb else 'false'}\n"
        f"backends: {{user_sim: {backend}, assistant: {backend}}}\n",
        encoding="utf-8",
    )
    return path


def play(cache_mb: int, turns: int, count: int, threads: int) -> tuple[float, dict[int, float]]:
    """(wall seconds, mean latency in ms per exchange) of one run in a fresh database."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        db = folder / "bench.duckdb"
        request = GenerateRequest(
            db=db, count=count, turns=turns, config=_config(folder, cache_mb, threads), seed=7
        )
        started = time.perf_counter()
        generate(request, environ={})
        wall = time.perf_counter() - started
        with duckdb.connect(str(db), read_only=True) as conn:
            rows = conn.execute(
                "SELECT exchange, avg(latency_ms) FROM messages GROUP BY exchange ORDER BY 1"
            ).fetchall()
    return wall, dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-mb", type=int, default=512)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, dict[int, float]]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode, mb in (("off", 0), ("on", args.cache_mb)):
            results[mode].append(play(mb, args.turns, args.count, args.threads))
    for mode, runs in results.items():
        walls = [wall for wall, _ in runs]
        per_exchange = {
            exchange: statistics.mean(run[1][exchange] for run in runs if exchange in run[1])
            for exchange in range(1, args.turns + 1)
        }
        shown = " ".join(f"{e}:{ms:,.0f}" for e, ms in per_exchange.items())
        print(f"cache {mode}: wall {statistics.mean(walls):.1f} s (runs {walls}); ms/turn {shown}")


if __name__ == "__main__":
    main()
