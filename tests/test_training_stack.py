"""Rapport's QLoRA path: `auto` picks 4-bit on CUDA and plain fp32 LoRA on CPU; a 4-bit load
through Rapport's loading code gives bitsandbytes NF4 layers with double quantization whose logits
stay near full precision; and `rapport train` runs end to end on such a model. bitsandbytes has a
CPU backend, so all of it runs here, with or without a GPU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rapport.training.base_model import load_model, resolve_base
from rapport.training.qlora import load_kwargs, wants_4bit
from rapport.training.tiny_model import build_tiny_model

DECODER_LINEAR_LAYERS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
PROMPT_IDS = [5, 17, 42, 99, 150, 201, 333, 404, 512, 600]
# Relative L2 distance of the 4-bit model's logits from fp32 (NF4 on the tiny model: ~0.2).
NF4_CLOSE = 0.35


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _load_4bit(base: str):
    cuda = _cuda()
    return load_model(resolve_base(base), **load_kwargs(wants_4bit("4bit", cuda), cuda))


def test_auto_quantization_is_qlora_on_cuda_and_plain_fp32_lora_on_cpu():
    import torch

    assert wants_4bit("auto", cuda=True)
    assert load_kwargs(True, cuda=True)["dtype"] == torch.bfloat16
    assert not wants_4bit("auto", cuda=False)
    assert load_kwargs(False, cuda=False) == {"dtype": torch.float32}


def test_the_quantization_setting_overrides_the_device():
    assert wants_4bit("4bit", cuda=False)
    assert not wants_4bit("none", cuda=True)


def test_a_4bit_load_makes_every_decoder_linear_layer_nf4_with_double_quantization(tiny_base):
    import bitsandbytes as bnb
    import torch

    model = _load_4bit(tiny_base)
    for layer in model.model.layers:
        for name in DECODER_LINEAR_LAYERS:
            linear = layer.get_submodule(name)
            assert isinstance(linear, bnb.nn.Linear4bit), name
            state = linear.weight.quant_state
            assert state.quant_type == "nf4" and state.nested, name  # nested: double quantization
            assert linear.compute_dtype == torch.bfloat16, name


def test_the_4bit_model_computes_finite_logits_close_to_full_precision(tiny_base):
    import torch

    quantized = _load_4bit(tiny_base)
    full = load_model(resolve_base(tiny_base), dtype=torch.float32)
    inputs = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        got = quantized(inputs.to(quantized.device)).logits[0].float().cpu().numpy()
        expected = full(inputs).logits[0].numpy()
    assert np.isfinite(got).all()
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < NF4_CLOSE


@pytest.mark.slow
def test_qlora_training_runs_when_4bit_is_asked_for(tiny_base, tmp_path):
    from datasets import Dataset, DatasetDict

    from rapport.training.sft import train
    from rapport.training.train_config import LoraSettings, TrainConfig

    conversation = [
        {"role": "user", "content": "I have been feeling stuck at work."},
        {"role": "assistant", "content": "That sounds hard. What weighs on you most?"},
    ]
    DatasetDict({"train": Dataset.from_dict({"messages": [conversation] * 2})}).save_to_disk(
        str(tmp_path / "data")
    )
    result = train(
        TrainConfig(
            base=tiny_base, dataset=str(tmp_path / "data"), output=str(tmp_path / "adapter"),
            quantization="4bit", max_steps=1, batch_size=1, gradient_accumulation=1,
            max_length=128, warmup_ratio=0.0, lora=LoraSettings(rank=4, alpha=8, dropout=0.0),
        )
    )  # fmt: skip
    assert result.quantized and result.steps == 1
    assert len(result.losses) == 1 and math.isfinite(result.losses[0])
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_a_gguf_base_asked_for_4bit_loads_in_4bit():
    """SmolLM2 from its GGUF is dequantized first, then quantized to NF4: QLoRA on a GGUF base
    must not silently train in full precision."""
    import torch

    from rapport.training.qlora import load_kwargs

    model = load_model(resolve_base("gguf:embedded"), **load_kwargs(True, False))
    layer = model.model.layers[0].self_attn.q_proj
    assert type(layer).__name__ == "Linear4bit"
    assert layer.weight.quant_state.quant_type == "nf4"
    assert model.model.embed_tokens.weight.dtype in (torch.bfloat16, torch.float32)
