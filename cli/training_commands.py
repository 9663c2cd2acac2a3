"""`rapport model tiny` and `rapport train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rapport._reads import corpus_texts
from rapport.config.constants import MAX_PORT
from rapport.training.sft import train as run_training
from rapport.training.tiny_model import build_tiny_model
from rapport.training.train_config import load_train_config

ADAPTER_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes first

model_app = typer.Typer(help="Models built by Rapport itself.")


@model_app.command("tiny")
def tiny(
    out: Annotated[Path, typer.Option("--out", help="Folder for the model and tokenizer.")],
    db: Annotated[
        Path | None,
        typer.Option("--db", help="Train the tokenizer on this corpus's text as well."),
    ] = None,
) -> None:
    """A tiny Llama-architecture chat model for tests and the offline demo, built offline."""
    texts = None
    if db is not None:
        texts = corpus_texts(db)
    build_tiny_model(out, texts)
    Console(soft_wrap=True).print(f"tiny model written to {out}")


def train(
    config: Annotated[Path | None, typer.Option("--config", help="train.yaml")] = None,
    base: Annotated[
        str | None,
        typer.Option("--base", help="Base model folder, gguf:PATH or gguf:embedded (SmolLM2)."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="A `rapport dataset build` folder.")
    ] = None,
    output: Annotated[str | None, typer.Option("--output", help="Adapter folder.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1)] = None,
) -> None:
    """LoRA SFT on the dataset (QLoRA on CUDA), loss on assistant tokens only."""
    settings = load_train_config(
        config, base=base, dataset=dataset, output=output, max_steps=max_steps
    )
    result = run_training(settings)
    console = Console(soft_wrap=True)
    first, last = (result.losses[0], result.losses[-1]) if result.losses else (0.0, 0.0)
    console.print(
        f"{result.steps} steps on {result.device}{' (QLoRA 4-bit)' if result.quantized else ''}"
        f" · loss {first:.3f} → {last:.3f} · adapter in {result.adapter} · {result.loss_plot}"
    )


def export(
    base: Annotated[
        str, typer.Option("--base", help="Base model folder, gguf:PATH or gguf:embedded.")
    ],
    out: Annotated[Path, typer.Option("--out", help="The GGUF file to write.")],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="LoRA adapter folder to merge in.")
    ] = None,
    quant: Annotated[str, typer.Option("--quant", help="q4_k_m, q8_0 or f16.")] = "q4_k_m",
) -> None:
    """Merge the adapter in full precision, write GGUF, quantize with llama.cpp."""
    import tempfile

    from rapport.config.errors import RapportError
    from rapport.training.gguf_export import export as run_export

    if quant not in ("q4_k_m", "q8_0", "f16"):
        raise RapportError(f"--quant must be q4_k_m, q8_0 or f16, not {quant!r}")
    if adapter is not None and not adapter.is_dir():
        raise RapportError(f"--adapter {adapter}: folder not found")
    if adapter is not None and not (adapter / ADAPTER_CONFIG).is_file():
        raise RapportError(
            f"--adapter {adapter}: no {ADAPTER_CONFIG}, so not a LoRA adapter folder "
            "(`rapport train --output` writes one)"
        )
    with tempfile.TemporaryDirectory(prefix="rapport-export-") as work:
        path = run_export(base, adapter, out, quant, Path(work))  # type: ignore[arg-type]
    size = path.stat().st_size / 1_000_000
    Console(soft_wrap=True).print(f"written {path} ({quant}, {size:,.1f} MB)")


ModelOption = Annotated[
    str, typer.Option("--model", help="A GGUF file (PATH or gguf:PATH), or embedded (SmolLM2).")
]


def serve(
    model: ModelOption,
    port: Annotated[int, typer.Option("--port", min=1, max=MAX_PORT)] = 8080,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    n_ctx: Annotated[int, typer.Option("--n-ctx", min=128)] = 4096,
) -> None:
    """Serve a GGUF with llama.cpp's OpenAI-compatible server (…/v1/chat/completions)."""
    from rapport.training.serving import resolve_gguf
    from rapport.training.serving import serve as run_server

    path = resolve_gguf(model)
    Console(stderr=True).print(
        f"serving {path} at http://{host}:{port}/v1 (model name: {path.stem})"
    )
    run_server(path, host, port, n_ctx)


def chat(
    model: ModelOption,
    domain: Annotated[
        Path | None, typer.Option("--domain", help="Domain folder (its system prompt).")
    ] = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", min=128)] = 4096,
) -> None:
    """Chat with a GGUF in the terminal, with the domain's system prompt (/quit to leave)."""
    from rapport.config.loader import load_domain
    from rapport.training.serving import chat as run_chat
    from rapport.training.serving import resolve_gguf

    path = resolve_gguf(model)
    system_prompt = load_domain(domain).prompts.system_prompt
    console = Console(soft_wrap=True)
    run_chat(path, system_prompt, input, console.print, n_ctx)
