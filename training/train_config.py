"""Training settings (train.yaml) decoded into a typed config; command-line flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from rapport.config import constants
from rapport.config.decoding import decode, read_yaml

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, lt=1)]
# transformers' schedules that need no extra arguments
Scheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]


class LoraSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rank: PositiveInt = 64
    alpha: PositiveInt = 128
    dropout: Fraction = 0.05
    target_modules: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    )


class TrainConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Defaults follow the seed's run (Qwen3-14B, QLoRA, 3 epochs, lr 2e-4 cosine). Values out
    of range are refused when the file is decoded, before any model loads."""

    base: str = ""  # a local model folder
    dataset: str = ""  # a `rapport dataset build --format hf` folder
    output: str = "adapter"
    lora: LoraSettings = LoraSettings()
    learning_rate: PositiveFloat = 2e-4
    lr_scheduler: Scheduler = "cosine"
    warmup_ratio: Fraction = 0.1
    weight_decay: Annotated[float, msgspec.Meta(ge=0)] = 0.01
    epochs: PositiveFloat = 3.0
    max_steps: Annotated[int, msgspec.Meta(ge=-1)] = -1  # -1: train for `epochs`
    max_length: PositiveInt = 16_384
    packing: bool = False
    batch_size: PositiveInt = 1
    gradient_accumulation: PositiveInt = 8
    gradient_checkpointing: bool | None = None  # None: on with CUDA, off on CPU
    quantization: Literal["auto", "4bit", "none"] = "auto"  # auto: QLoRA on CUDA, none on CPU
    seed: Annotated[int, msgspec.Meta(ge=0, le=constants.MAX_TRAIN_SEED)] = 0
    logging_steps: PositiveInt = 1


def load_train_config(path: Path | None, **overrides: object) -> TrainConfig:
    config = (
        TrainConfig()
        if path is None
        else decode(read_yaml(path, str(path)), TrainConfig, str(path))
    )
    changes = {key: value for key, value in overrides.items() if value is not None}
    return msgspec.structs.replace(config, **changes)
