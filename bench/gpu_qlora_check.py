"""GPU check of Rapport's QLoRA path, run on a CUDA machine (CI has none):

    python bench/gpu_qlora_check.py BASE_DIR DATASET_DIR OUT.json

BASE_DIR is a `rapport model tiny` folder (or any local Llama-style model), DATASET_DIR a
`rapport dataset build --format hf` folder. It loads the base in 4-bit NF4 through Rapport's own
loader, runs Rapport's `train()` on CUDA (NF4 + double quantization, bf16 compute, paged 8-bit
AdamW, gradient checkpointing), merges the adapter in fp32 as `rapport export` does, and compares
the merged model's logits with the PEFT model's (close) and the base's (different).
Last result: bench/results/gpu_qlora_check.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from rapport.training.base_model import load_model, load_tokenizer, resolve_base
from rapport.training.gguf_export import merge_adapter
from rapport.training.sft import train
from rapport.training.train_config import LoraSettings, TrainConfig

PROMPT = "hello there, how are you feeling today?"
STEPS = 30


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids.to(model.device)).logits.float().cpu()


def main(base_dir: str, dataset_dir: str, out: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    base = resolve_base(base_dir)
    report: dict[str, object] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    ids = load_tokenizer(base)(PROMPT, return_tensors="pt").input_ids
    nf4 = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    quantized = load_model(base, dtype=torch.bfloat16, quantization_config=nf4)
    full = load_model(base, dtype=torch.float32).to("cuda")
    report["4bit_linear_kinds"] = sorted(
        {type(m).__name__ for m in quantized.modules() if "Linear" in type(m).__name__}
    )
    report["4bit_vs_fp32_max_abs_logit_diff"] = float(
        (_logits(quantized, ids) - _logits(full, ids)).abs().max()
    )
    del quantized, full
    with tempfile.TemporaryDirectory() as work:
        adapter = Path(work) / "adapter"
        started = time.time()
        result = train(
            TrainConfig(
                base=base_dir,
                dataset=dataset_dir,
                output=str(adapter),
                max_steps=STEPS,
                learning_rate=2e-3,
                batch_size=2,
                gradient_accumulation=1,
                max_length=512,
                lora=LoraSettings(rank=16, alpha=32),
            )
        )
        report["train"] = {
            "steps": result.steps,
            "device": result.device,
            "quantized": result.quantized,
            "first_loss": result.losses[0],
            "last_loss": result.losses[-1],
            "seconds": round(time.time() - started, 1),
        }
        merged_dir = merge_adapter(base, adapter, Path(work) / "merged")
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32)
        peft = PeftModel.from_pretrained(load_model(base, dtype=torch.float32), str(adapter))
        plain = load_model(base, dtype=torch.float32)
        merged_logits = _logits(merged.to("cuda"), ids)
        report["merged_vs_peft_max_abs"] = float(
            (merged_logits - _logits(peft.to("cuda"), ids)).abs().max()
        )
        report["merged_vs_base_max_abs"] = float(
            (merged_logits - _logits(plain.to("cuda"), ids)).abs().max()
        )
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
