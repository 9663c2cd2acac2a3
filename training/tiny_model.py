"""`rapport model tiny`: a tiny Llama-architecture chat model built offline — a BPE tokenizer
trained on the corpus text (or a built-in sample) and random weights from a config whose
dimensions are multiples of 256, so llama.cpp's k-quants apply. For tests and the offline demo."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from rapport.training.tiny_tokenizer import build_tokenizer

SAMPLE_TEXT = (
    "I have been feeling stuck at work and I do not know what to do about it.",
    "That sounds hard. What part of it weighs on you most this week?",
    "My brakes squeal every time I stop, and the chain skips on hills.",
    "One small step could be to write down what happened and how you felt.",
)


class TinyModelSpec(msgspec.Struct, frozen=True):
    hidden_size: int = 256
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 768
    max_position_embeddings: int = 2048
    seed: int = 0


DEFAULT_SPEC = TinyModelSpec()


def build_tiny_model(
    out: Path, texts: Iterable[str] | None = None, spec: TinyModelSpec = DEFAULT_SPEC
) -> Path:
    """Write a tokenizer and a randomly initialised LlamaForCausalLM to `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    corpus = list(texts) if texts is not None else []
    corpus += list(SAMPLE_TEXT) * 10
    tokenizer_dir = build_tokenizer(corpus, out, vocab_size=spec.vocab_size)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=spec.vocab_size,  # a multiple of 256 as well, whatever the tokenizer learned
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    return out
