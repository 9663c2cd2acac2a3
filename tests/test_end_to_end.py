"""The whole pipeline on CPU: simulated corpus → judge → dataset → tiny model LoRA SFT (loss goes
down) → merge → GGUF → quantize → served by llama.cpp → used through the openai backend as
the assistant of a short `rapport generate` run, and evaluated (in process vs served) with
`rapport eval`. Uses the tiny domain: its prompts fit the
tiny model's 2,048-token context."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import duckdb
import llama_cpp  # noqa: F401  (a required dependency: without it the suite fails)
import pytest

from rapport.fakes.provider_process import free_port
from tests.conftest import TINY_DOMAIN, rapport

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README

TRAIN_YAML = (
    "learning_rate: 0.003\nbatch_size: 2\ngradient_accumulation: 1\nmax_length: 768\n"
    "warmup_ratio: 0.0\nlora: {rank: 8, alpha: 16, dropout: 0.0}\n"
)


def _ok(*args: str, timeout: float = 600) -> str:
    result = rapport(*args, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _wait_for(base_url: str, server: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                assert name in response.read().decode()
                return
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)


@pytest.mark.serial  # llama.cpp in process: its threads spin, beside another worker they crawl
def test_simulate_judge_train_export_serve_generate(tmp_path):
    started = time.monotonic()
    db, tiny, data = tmp_path / "c.duckdb", tmp_path / "tiny", tmp_path / "data"
    adapter, model = tmp_path / "adapter", tmp_path / "m.gguf"
    domain = ("--domain", str(TINY_DOMAIN))
    _ok(
        "generate",
        "--db",
        str(db),
        "--count",
        "24",
        "--turns",
        "4",
        "--backend",
        "simulated",
        *domain,
    )
    _ok("judge", "--db", str(db), "--judge", "simulated:quality=0.97")
    _ok("model", "tiny", "--out", str(tiny), "--db", str(db))
    _ok(
        "dataset",
        "build",
        "--db",
        str(db),
        "--out",
        str(data),
        "--tokenizer",
        str(tiny),
        "--max-tokens",
        "768",
    )
    settings = tmp_path / "train.yaml"
    settings.write_text(TRAIN_YAML)
    _ok("train", "--config", str(settings), "--base", str(tiny), "--dataset", str(data),
        "--output", str(adapter), "--max-steps", "10", timeout=900)  # fmt: skip
    losses = json.loads((adapter / "loss.json").read_text())
    assert sum(losses[-3:]) < sum(losses[:3])
    _ok(
        "export",
        "--base",
        str(tiny),
        "--adapter",
        str(adapter),
        "--out",
        str(model),
        "--quant",
        "q4_k_m",
    )

    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    server = subprocess.Popen(
        [sys.executable, "-m", "rapport", "serve", "--model", str(model), "--port", str(port), "--n-ctx", "2048"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    served = tmp_path / "served.duckdb"
    assistant = tmp_path / "assistant.yaml"
    assistant.write_text(
        f"provider: openai\nmodel: {model.stem}\nbase_url: {base_url}\nmax_tokens: 48\n"
    )
    try:
        _wait_for(base_url, server, model.stem)
        output = _ok("generate", "--db", str(served), "--count", "2", "--turns", "2", *domain,
                     "--user-backend", "simulated", "--assistant-backend", str(assistant))  # fmt: skip
        assert "2/2 complete" in output, output
        # The fine-tuned GGUF in process (baseline) against the same model served (candidate).
        report = tmp_path / "eval"
        output = _ok("eval", "--db", str(db), "--scenarios", "2", "--turns", "1",
                     "--baseline", f"gguf:{model}", "--candidate", str(assistant),
                     "--user-backend", "simulated", "--judges", "simulated", "--out", str(report))  # fmt: skip
        assert "over N = 2" in output, output
        assert "too few" in (report / "report.md").read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    with duckdb.connect(str(served), read_only=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT backend, model FROM messages WHERE role = 'assistant'"
        ).fetchall()
    assert rows == [("openai", model.stem)]
    print(f"\nend-to-end wall time: {time.monotonic() - started:.1f} s")
