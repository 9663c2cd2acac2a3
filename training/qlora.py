"""How `rapport train` loads its base: QLoRA (bitsandbytes 4-bit NF4 weights, double
quantization, bf16 compute) on CUDA or when asked for; plain LoRA over fp32 weights on CPU."""

from __future__ import annotations

from typing import Any


def wants_4bit(quantization: str, cuda: bool) -> bool:
    """`4bit` always, `none` never, `auto` only where there is CUDA."""
    return quantization == "4bit" or (quantization == "auto" and cuda)


def load_kwargs(quantize: bool, cuda: bool) -> dict[str, Any]:
    """`from_pretrained` arguments: bf16 on CUDA, fp32 on CPU, plus the 4-bit config."""
    import torch

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    return kwargs
