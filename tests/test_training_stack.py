"""The `train` extra installs a consistent training stack (used by the dataset and training
stages): the libraries import together and torch is usable on this machine."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module", ["torch", "transformers", "peft", "trl", "datasets", "huggingface_hub", "accelerate"]
)
def test_training_library_imports(module):
    assert importlib.import_module(module).__version__


def test_torch_computes_on_this_machine():
    import torch

    weights = torch.ones(4, 4, requires_grad=True)
    loss = (weights @ torch.arange(4.0)).sum()
    loss.backward()
    assert weights.grad is not None and float(weights.grad.sum()) == pytest.approx(24.0)
