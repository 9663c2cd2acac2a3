"""`rapport export` merges the LoRA adapter into the base: on a fixed prompt, the exported GGUF
(f16, run by llama.cpp) computes the adapted model's logits (PEFT in transformers), not the base's.
Checked for the tiny model built offline and for SmolLM2-135M (`gguf:embedded`).

A freshly initialised LoRA adapter changes nothing (its B matrices are zero), so the adapter here
gets seeded random B matrices instead of training: far enough from the base that "different" is
unambiguous, deterministic, and seconds rather than minutes."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from rapport.training.base_model import load_model, load_tokenizer, resolve_base
from rapport.training.tiny_model import build_tiny_model
from tests.conftest import rapport

pytestmark = pytest.mark.slow

PROMPT = "I have been feeling stuck at work lately."
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_SEED = 0
LORA_B_STD = 0.1  # moves SmolLM2's logits ~19% (relative L2) and its top token at 3 of 9 places
# Relative L2 distances between logit matrices. The f16 export sits ~1e-3 from the PEFT model.
CLOSE = 0.01
FAR = 0.1


class PromptLogits(NamedTuple):
    base: np.ndarray  # the base model in transformers
    adapted: np.ndarray  # base + adapter, unmerged, in transformers (PEFT)
    exported: np.ndarray  # `rapport export --quant f16` of base + adapter, in llama.cpp


def relative_distance(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


@pytest.fixture(scope="module", params=["tiny", "smollm2"])
def logits(request, tmp_path_factory) -> PromptLogits:
    root = tmp_path_factory.mktemp(request.param)
    base = str(build_tiny_model(root / "tiny")) if request.param == "tiny" else "gguf:embedded"
    ids = load_tokenizer(resolve_base(base)).encode(PROMPT, add_special_tokens=False)
    base_logits, adapted_logits = _transformers_logits(base, ids, root / "adapter")
    gguf = root / "model.gguf"
    exported = rapport(
        "export", "--base", base, "--adapter", str(root / "adapter"), "--out", str(gguf),
        "--quant", "f16", timeout=900,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    return PromptLogits(base_logits, adapted_logits, _llama_cpp_logits(gguf, ids))


def _transformers_logits(base: str, ids: list[int], adapter: Path) -> tuple[np.ndarray, np.ndarray]:
    """The base's logits, then the logits with a far-from-zero adapter, saved to `adapter`."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = load_model(resolve_base(base), dtype=torch.float32)
    inputs = torch.tensor([ids])
    with torch.no_grad():
        base_logits = model(inputs).logits[0].numpy()
    torch.manual_seed(ADAPTER_SEED)  # LoRA's A matrices
    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=list(TARGET_MODULES),
        task_type="CAUSAL_LM",
    )  # fmt: skip
    adapted = get_peft_model(model, lora)
    noise = torch.Generator().manual_seed(ADAPTER_SEED)
    with torch.no_grad():
        for name, weights in adapted.named_parameters():
            if "lora_B" in name:
                weights.copy_(torch.randn(weights.shape, generator=noise) * LORA_B_STD)
        adapted_logits = adapted(inputs).logits[0].numpy()
    adapted.save_pretrained(str(adapter))
    return base_logits, adapted_logits


def _llama_cpp_logits(gguf: Path, ids: list[int]) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf), n_ctx=64, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])
    finally:
        llm.close()


def test_the_exported_gguf_computes_the_adapted_models_logits(logits):
    assert logits.exported.shape == logits.adapted.shape
    distance = relative_distance(logits.exported, logits.adapted)
    assert distance < CLOSE


def test_the_exported_gguf_no_longer_computes_the_base_models_logits(logits):
    distance = relative_distance(logits.exported, logits.base)
    assert distance > FAR
