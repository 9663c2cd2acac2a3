"""Training settings (train.yaml) decoded into a typed config; command-line flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from config.decoding import decode, read_yaml


class LoraSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rank: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


class TrainConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Defaults follow the seed's run (Qwen3-14B, QLoRA, 3 epochs, lr 2e-4 cosine)."""

    base: str = ""  # a local model folder
    dataset: str = ""  # a `rapport dataset build --format hf` folder
    output: str = "adapter"
    lora: LoraSettings = LoraSettings()
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    epochs: float = 3.0
    max_steps: int = -1
    max_length: int = 16_384
    packing: bool = False
    batch_size: int = 1
    gradient_accumulation: int = 8
    gradient_checkpointing: bool | None = None  # None: on with CUDA, off on CPU
    quantization: Literal["auto", "4bit", "none"] = "auto"  # auto: QLoRA on CUDA, none on CPU
    seed: int = 0
    logging_steps: int = 1


def load_train_config(path: Path | None, **overrides: object) -> TrainConfig:
    config = (
        TrainConfig()
        if path is None
        else decode(read_yaml(path, str(path)), TrainConfig, str(path))
    )
    changes = {key: value for key, value in overrides.items() if value is not None}
    return msgspec.structs.replace(config, **changes)
