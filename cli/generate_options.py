"""The options `rapport generate` and `rapport iterate` share, defined once, and the one place
their values become a `GenerateRequest`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rapport.config.constants import MAX_ACTIVE, MAX_SEED, MAX_TURNS
from rapport.stages.generate import GenerateRequest, Judging

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
        help="Both roles' backend: simulated, llamacpp, gguf:PATH, openai:MODEL[@URL], "
        "anthropic:MODEL, command:CLI, or a YAML file.",
    ),
]
UserBackendOption = Annotated[
    str | None, typer.Option("--user-backend", help="The user simulator's backend spec.")
]
AssistantBackendOption = Annotated[
    str | None, typer.Option("--assistant-backend", help="The assistant's backend spec.")
]


def generate_request(
    db: Path,
    count: int,
    *,
    seed: int | None,
    domain: Path | None,
    config: Path | None,
    max_active: int | None,
    turns: int | None,
    backend: str | None,
    user_backend: str | None,
    assistant_backend: str | None,
    judging: Judging,
    judges: list[str] | None = None,
) -> GenerateRequest:
    return GenerateRequest(
        db=db,
        count=count,
        seed=seed,
        domain=domain,
        config=config,
        max_active=max_active,
        turns=turns,
        backend=backend,
        user_backend=user_backend,
        assistant_backend=assistant_backend,
        judging=judging,
        judges=tuple(judges or ()),
    )
