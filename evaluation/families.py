"""Which model family a backend belongs to, so a report can say when the judge grades its own
family (LLM judges favour text like their own)."""

from __future__ import annotations

from pathlib import Path

from rapport.config.run import BackendConfig

# Name fragments, most specific first; a model whose name holds none is its own family.
KNOWN_FAMILIES = (
    "smollm",
    "qwen",
    "llama",
    "mistral",
    "mixtral",
    "gemma",
    "phi",
    "deepseek",
    "olmo",
    "falcon",
    "granite",
    "command-r",
    "gpt",
    "claude",
)
SIMULATOR_FAMILY = "rapport-simulator"


def family_of(settings: BackendConfig) -> str:
    """The family named by the model (a GGUF's own metadata first, then its file name)."""
    if settings.provider == "simulated":
        return SIMULATOR_FAMILY
    names: list[str] = []
    if settings.provider == "llamacpp":
        path = _gguf_path(settings)
        if path is None:
            names.append("smollm")
        else:  # the file's own names, its file name, and only then its architecture
            own, architecture = _gguf_names(path)
            names += [*own, path.name, *architecture]
    elif settings.provider == "command":
        names += [Path(settings.command[0]).name] if settings.command else []
    names.append(getattr(settings, "model", ""))  # llamacpp has none: its file names it
    if settings.provider == "anthropic":
        names.append("claude")
    for name in names:
        lowered = name.lower()
        for family in KNOWN_FAMILIES:
            if family in lowered:
                return family
    return next((name.lower() for name in names if name), settings.provider)


def _gguf_path(settings: BackendConfig) -> Path | None:
    if settings.model_path in (None, "embedded"):
        return None
    return Path(settings.model_path)


def _gguf_names(path: Path) -> tuple[list[str], list[str]]:
    """(`general.basename` and `general.name`, `general.architecture`) from the file (needs
    the `gguf` package). The architecture comes last: many families share `llama`'s."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return [], []
    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError):
        return [], []

    def values(*keys: str) -> list[str]:
        found = []
        for key in keys:
            field = reader.fields.get(key)
            if field is not None:
                found.append(bytes(field.parts[field.data[0]]).decode("utf-8", "replace"))
        return found

    return values("general.basename", "general.name"), values("general.architecture")
