"""Options several commands share, defined once (generate, iterate, eval, report), and the one
place generate's and iterate's values become a `GenerateRequest`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import typer

from rapport.config.constants import MAX_ACTIVE, MAX_SEED, MAX_TURNS, MAX_WORKERS
from rapport.config.shards import parse_shard
from rapport.stages.generate import GenerateRequest

SeedOption = Annotated[
    int | None,
    typer.Option(
        "--seed", min=0, max=MAX_SEED, help="Plan seed (default 0; keep it to compare runs)."
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Run settings (RUN.yaml), judges included.")
]
MaxActiveOption = Annotated[
    int | None,
    typer.Option("--max-active", min=1, max=MAX_ACTIVE, help="Conversations alive at once."),
]
TurnsOption = Annotated[
    int | None,
    typer.Option(
        "--turns", min=1, max=MAX_TURNS, help="Fix every conversation's length (exchanges)."
    ),
]
BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Both roles' backend: simulated, null, llamacpp, gguf:PATH, openai:MODEL[@URL], "
        "anthropic:MODEL, command:CLI, or a YAML file.",
    ),
]
UserBackendOption = Annotated[
    str | None, typer.Option("--user-backend", help="The user simulator's backend spec.")
]
AssistantBackendOption = Annotated[
    str | None, typer.Option("--assistant-backend", help="The assistant's backend spec.")
]
MaxCostOption = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        min=0.01,
        help="Budget in US dollars for the whole corpus of this plan: what earlier runs of the "
        "same command spent counts, so running it again with the same budget spends nothing "
        "more. No call starts that could pass it; the run stops cleanly (exit 5) and a higher "
        "--max-cost continues it. Every model needs a known price (simulated, null and "
        "in-process llama.cpp backends are free). Overrides budget_usd: in the run config.",
    ),
]

EvalMaxCostOption = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        min=0.01,
        help="Budget in US dollars for this eval (these sides on these held-out scenarios): "
        "earlier runs of it count. No call starts that could pass it; the run stops cleanly "
        "(exit 5) and a higher --max-cost continues it. Every model needs a known price. "
        "Overrides budget_usd: in the run config.",
    ),
]


ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="K/N: play only the plan's scenarios with index % N == K, into this --db; each "
        "shard gets 1/N of every configured rate (run config: shard_limits: full keeps it all).",
    ),
]


RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Play the plan on a Ray cluster: --ray alone starts a local one; --ray auto, "
        "--ray ray://HOST:PORT or --ray HOST:PORT joins one (needs rapport\\[ray]).",
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers", min=1, max=MAX_WORKERS, help="Ray worker actors (with --ray; default 2)."
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No live progress display.")]
ReportOverwriteOption = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace --out even when it holds files other than a report."),
]


OPTIONAL_VALUES = {"--ray": "local"}  # options whose value may be left out, and its default


def optional_values(argv: list[str]) -> list[str]:
    """`--ray` alone means `--ray local` (typer has no option with an optional value): the
    default is filled in when the option is last or followed by another option."""
    out = []
    for index, token in enumerate(argv):
        default = OPTIONAL_VALUES.get(token)
        following = argv[index + 1] if index + 1 < len(argv) else None
        if default is not None and (following is None or following.startswith("-")):
            token = f"{token}={default}"
        out.append(token)
    return out


def cluster_player(address: str | None, workers: int) -> Callable[..., object] | None:
    """`generate`'s player on a Ray cluster, or None without --ray. Ray missing or the
    cluster unreachable: one line and exit 2, nothing written."""
    if address is None:
        return None
    from rapport.cluster.driver import ClusterRequest, ray_player
    from rapport.cluster.runtime import connect

    connect(address)  # before anything is written: a cluster that is not there is refused first
    return ray_player(ClusterRequest(address=address, workers=workers))


def generate_request(flags: Mapping[str, object], **fixed: object) -> GenerateRequest:
    """The request from a command's parsed options (its parameters are named as the request's
    fields), with what the command fixes itself."""
    values = {k: v for k, v in flags.items() if k in GenerateRequest.__struct_fields__} | fixed
    values["judges"] = tuple(values.get("judges") or ())  # type: ignore[arg-type]
    if isinstance(values.get("shard"), str):
        values["shard"] = parse_shard(values["shard"])  # type: ignore[arg-type]
    return GenerateRequest(**values)  # type: ignore[arg-type]
