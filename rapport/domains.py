"""`rapport.load_domain`: a domain folder (or a shipped domain by name) as its typed config."""

from __future__ import annotations

import os
from pathlib import Path

from rapport.config.domain import Domain
from rapport.config.loader import load_domain as _load_domain
from rapport.errors import api_errors


@api_errors
def load_domain(path: str | os.PathLike[str] | None = None) -> Domain:
    """Load and validate a domain: a folder of YAML and Markdown (topics, flaws, personas,
    prompts, rubric), or a shipped domain by name; None gives the shipped therapy domain. The
    same Structs `rapport generate --domain` decodes. Raises ConfigError (a BadInput) naming
    the file and key of the first problem."""
    return _load_domain(Path(path) if path is not None else None)
