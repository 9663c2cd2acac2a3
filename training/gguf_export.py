"""`rapport export`: merge a LoRA adapter into its base in full precision, write GGUF with the
`gguf` package's writer, quantize with llama.cpp.

llama-cpp-python's wheel ships no `convert_hf_to_gguf.py` (only its source distribution does),
so the conversion for the architectures Rapport trains (Llama; byte-level BPE tokenizers) is
written here with `gguf.GGUFWriter`, and checked by loading the result in llama.cpp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

from rapport.config.errors import RapportError
from rapport.training.base_model import BaseModel, load_model, load_tokenizer, resolve_base

Quant = Literal["q4_k_m", "q8_0", "f16"]
TOKEN_NORMAL = 1
TOKEN_CONTROL = 3

_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def merge_adapter(base: BaseModel, adapter: Path | None, out: Path) -> Path:
    """The base with the adapter merged in, in fp32, saved as a transformers folder."""
    import torch

    model = load_model(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    load_tokenizer(base).save_pretrained(str(out))
    return out


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF stores q/k rotary halves apart; llama.cpp interleaves them (as convert_hf_to_gguf)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(
    model_dir: Path,
    out: Path,
    precision: Literal["f16", "f32"] = "f16",
    tokenizer_from: Path | None = None,
) -> Path:
    """Write a Llama-architecture transformers folder as GGUF. `tokenizer_from`: a GGUF whose
    tokenizer metadata is copied as is (a GGUF base keeps llama.cpp's exact tokenization)."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise RapportError(
            f"{model_dir}: export supports Llama models, not {config.get('model_type')!r}"
        )
    tokenizer_file = json.loads((model_dir / "tokenizer.json").read_text())
    if tokenizer_file["model"]["type"] != "BPE":
        raise RapportError(f"{model_dir}: export supports BPE tokenizers")
    heads, kv_heads = (
        config["num_attention_heads"],
        config.get("num_key_value_heads") or config["num_attention_heads"],
    )
    tensors = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        tensors |= load_file(str(shard))

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    rope = config.get("rope_theta") or (config.get("rope_parameters") or {}).get(
        "rope_theta", 10000.0
    )
    writer.add_rope_freq_base(float(rope))
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if precision == "f16" else gguf.LlamaFileType.ALL_F32
    )
    if tokenizer_from is not None:
        _copy_tokenizer(writer, tokenizer_from)
    else:
        _add_tokenizer(writer, model_dir, tokenizer_file, config)

    for name, array in tensors.items():
        gguf_name, data = _convert_tensor(name, array, heads, kv_heads)
        if gguf_name is None:
            continue
        if data.ndim == 1 or precision == "f32":
            data = data.astype(np.float32)
        else:
            data = data.astype(np.float16)
        writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _convert_tensor(
    name: str, array: np.ndarray, heads: int, kv_heads: int
) -> tuple[str | None, np.ndarray]:
    if name in _TOP_TENSORS:
        return _TOP_TENSORS[name], array
    parts = name.split(".")
    if len(parts) > 3 and parts[0] == "model" and parts[1] == "layers":
        suffix = ".".join(parts[3:])
        target = _LAYER_TENSORS.get(suffix)
        if target is None:
            return None, array
        if suffix == "self_attn.q_proj.weight":
            array = _permute(array, heads)
        elif suffix == "self_attn.k_proj.weight":
            array = _permute(array, kv_heads)
        return f"blk.{parts[2]}.{target}", array
    return None, array


def _add_tokenizer(writer, model_dir: Path, tokenizer_file: dict, config: dict) -> None:
    vocab: dict[str, int] = tokenizer_file["model"]["vocab"]
    added = {token["content"]: token["id"] for token in tokenizer_file.get("added_tokens", [])}
    size = max(config["vocab_size"], max([*vocab.values(), *added.values()]) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [TOKEN_CONTROL] * size  # padding slots past the tokenizer's vocabulary
    for token, index in vocab.items():
        tokens[index], types[index] = token, TOKEN_NORMAL
    for token, index in added.items():
        tokens[index], types[index] = token, TOKEN_CONTROL
    merges = [
        m if isinstance(m, str) else " ".join(m) for m in tokenizer_file["model"].get("merges", [])
    ]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")  # the GPT-2 byte-level regex, as our tokenizers use
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if config.get("eos_token_id") is not None:
        writer.add_eos_token_id(config["eos_token_id"])
    if config.get("pad_token_id") is not None:
        writer.add_pad_token_id(config["pad_token_id"])
    writer.add_add_bos_token(False)
    template = model_dir / "chat_template.jinja"
    if template.exists():
        writer.add_chat_template(template.read_text())


def _copy_tokenizer(writer, source: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(source))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=field.types[1])
        else:
            writer.add_key_value(key, field.contents(), field.types[0])


def quantize(source: Path, out: Path, quant: Quant) -> Path:
    """llama.cpp's own quantizer (k-quants need tensor rows that are multiples of 256)."""
    import llama_cpp

    ftypes = {
        "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
        "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    }
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if status != 0:
        raise RapportError(f"quantization to {quant} failed (llama.cpp status {status})")
    return out


def export(base: str, adapter: Path | None, out: Path, quant: Quant, workdir: Path) -> Path:
    """Merge, write GGUF (f16), quantize; returns the final GGUF path."""
    model = resolve_base(base)
    merged = merge_adapter(model, adapter, workdir / "merged")
    full = write_gguf(merged, workdir / "model-f16.gguf", "f16", tokenizer_from=model.source_gguf)
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant == "f16":
        full.replace(out)
        return out
    return quantize(full, out, quant)
