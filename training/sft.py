"""`rapport train`: supervised fine-tuning with trl's SFTTrainer and a peft LoRA adapter, loss
on assistant tokens only. On CUDA: QLoRA (bitsandbytes 4-bit NF4, double quantization, bf16
compute); on CPU: plain LoRA in fp32 — the same code path otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec

from rapport.config.errors import RapportError
from rapport.training.base_model import load_model, load_tokenizer, resolve_base
from rapport.training.qlora import load_kwargs, wants_4bit
from rapport.training.train_config import TrainConfig


class TrainResult(msgspec.Struct, frozen=True):
    adapter: str
    steps: int
    losses: list[float]
    device: str
    quantized: bool
    loss_plot: str


def _check_paths(config: TrainConfig) -> None:
    resolve_base(config.base)
    if not config.dataset or not (Path(config.dataset) / "dataset_dict.json").exists():
        raise RapportError(
            "dataset folder not found or not saved with --format hf: "
            f"{config.dataset or '(none given)'}"
        )


def train(config: TrainConfig) -> TrainResult:
    _check_paths(config)
    output = Path(config.output)
    created = not output.exists()
    try:
        return _train(config, output)
    except BaseException:
        if created:  # a failed run leaves no partial adapter folder behind
            shutil.rmtree(output, ignore_errors=True)
        raise


def _train(config: TrainConfig, output: Path) -> TrainResult:
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig
    from peft.utils.error import NoMatchingPeftModuleError
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    quantize = wants_4bit(config.quantization, cuda)
    base = resolve_base(config.base)
    tokenizer = load_tokenizer(base)
    model = load_model(base, **load_kwargs(quantize, cuda))
    dataset = load_from_disk(config.dataset)
    train_split = dataset["train"].select_columns(["messages"])
    checkpointing = cuda if config.gradient_checkpointing is None else config.gradient_checkpointing
    args = SFTConfig(
        output_dir=str(output),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        max_length=config.max_length,
        packing=config.packing,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        gradient_checkpointing=checkpointing,
        assistant_only_loss=True,
        bf16=cuda,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        optim="paged_adamw_8bit" if quantize else "adamw_torch",
    )
    lora = LoraConfig(
        r=config.lora.rank,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train_split,
            processing_class=tokenizer,
            peft_config=lora,
        )
    except NoMatchingPeftModuleError:  # only the model can tell which layer names exist
        modules = ", ".join(config.lora.target_modules)
        raise RapportError(
            f"lora.target_modules: the base model {config.base} has no {modules} layers"
        ) from None
    trainer.train()
    trainer.model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    (output / "loss.json").write_bytes(msgspec.json.encode(losses))
    plot = output / "loss.png"
    _plot_losses(losses, plot)
    return TrainResult(
        adapter=str(output),
        steps=trainer.state.global_step,
        losses=losses,
        device="cuda" if cuda else "cpu",
        quantized=quantize,
        loss_plot=str(plot),
    )


def _plot_losses(losses: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3)
    axes.set_xlabel("logging step")
    axes.set_ylabel("training loss (assistant tokens)")
    axes.set_title("rapport train: loss")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
