"""Training on CPU: a tiny model built offline, LoRA SFT on assistant tokens for a few steps
(loss goes down), the adapter and its loss curve written; settings errors are one line."""

from __future__ import annotations

import json

import pytest

from agents.generation import GenerateRequest, generate
from judges.run import JudgeRequest, judge_corpus
from tests.conftest import rapport
from training.dataset_build import DatasetRequest, build_dataset


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
