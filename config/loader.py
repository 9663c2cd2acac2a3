"""Loads a domain folder into a validated Domain."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rapport.config.decoding import load_file, read_text
from rapport.config.domain import (
    Domain,
    DomainInfo,
    Flaws,
    Personas,
    Prompts,
    Rubric,
    SimulatorPhrases,
    Topics,
)
from rapport.config.errors import ConfigError
from rapport.config.validation import problems

DEFAULT_DOMAIN = "therapy"
TEMPLATE_DOMAIN = "_template"  # the commented starting point of `rapport domain new`

DOMAIN_PARTS = {
    "info": ("domain.yaml", DomainInfo),
    "topics": ("topics.yaml", Topics),
    "flaws": ("flaws.yaml", Flaws),
    "personas": ("personas.yaml", Personas),
    "rubric": ("rubric.yaml", Rubric),
    "simulator": ("simulator.yaml", SimulatorPhrases),
}
# Parts a domain may leave out: without simulator_rubric.yaml the user side is not judged.
OPTIONAL_PARTS = {"simulator_rubric": ("simulator_rubric.yaml", Rubric)}
PROMPT_NAMES = ("user_simulator", "assistant", "judge", "system_prompt")


def shipped_domain_dir(name: str = DEFAULT_DOMAIN) -> Path:
    """The folder of a domain shipped inside the package."""
    return Path(str(resources.files("rapport.config") / "domains" / name))


def shipped_domain_names() -> list[str]:
    """The domains shipped inside the package (the template, whose name starts with _, aside)."""
    root = shipped_domain_dir(DEFAULT_DOMAIN).parent
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith(("_", "."))
    )


def domain_files(directory: Path) -> dict[str, str]:
    """Which file each part of a domain comes from, as shown in error messages."""
    parts = DOMAIN_PARTS | OPTIONAL_PARTS
    files = {part: str(directory / filename) for part, (filename, _) in parts.items()}
    files |= {f"prompt:{name}": str(directory / "prompts" / f"{name}.md") for name in PROMPT_NAMES}
    return files


def load_domain(directory: Path | None = None) -> Domain:
    """Load and validate a domain folder, or a shipped domain by name (default: therapy)."""
    directory = directory if directory is not None else shipped_domain_dir()
    if not directory.is_dir() and str(directory) in shipped_domain_names():
        directory = shipped_domain_dir(str(directory))  # a shipped domain, by name
    if not directory.is_dir():
        raise ConfigError(str(directory), None, "domain folder not found")
    files = domain_files(directory)
    parts = {
        part: load_file(Path(files[part]), type_, files[part])
        for part, (_, type_) in DOMAIN_PARTS.items()
    }
    parts |= {
        part: load_file(Path(files[part]), type_, files[part])
        for part, (_, type_) in OPTIONAL_PARTS.items()
        if Path(files[part]).is_file()
    }
    prompts = Prompts(
        **{
            name: read_text(Path(files[f"prompt:{name}"]), files[f"prompt:{name}"])
            for name in PROMPT_NAMES
        }
    )
    domain = Domain(prompts=prompts, **parts)
    found = problems(domain, files)
    if found:
        raise found[0]
    return domain
