"""`rapport domain new`: a new domain folder copied from the commented template, a shipped
domain or another domain folder, with its name (and optionally its description) set."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from rapport.config.decoding import read_utf8
from rapport.config.errors import RapportError
from rapport.config.loader import TEMPLATE_DOMAIN, shipped_domain_dir, shipped_domain_names

# Not part of a domain: hidden files, caches, and `rapport iterate`'s database kept beside it.
_IGNORED = shutil.ignore_patterns(".*", "__pycache__", "*.pyc", "*.duckdb", "*.duckdb.*")
_NOT_A_NAME = re.compile(r"[^a-z0-9]+")


def resolve_source(source: str | None) -> Path:
    """A domain folder to copy: the template (None), a folder path or a shipped domain's name."""
    if source is None:
        return shipped_domain_dir(TEMPLATE_DOMAIN)
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source in shipped_domain_names():
        return shipped_domain_dir(source)
    shipped = ", ".join(shipped_domain_names())
    raise RapportError(
        f"--from {source}: neither a folder nor a shipped domain (shipped: {shipped})"
    )


def ensure_empty(target: Path) -> None:
    """Refuse to write into anything but a missing or empty folder."""
    if target.exists() and not target.is_dir():
        raise RapportError(f"{target}: exists and is not a folder; choose a new folder")
    if target.is_dir() and any(target.iterdir()):
        raise RapportError(f"{target}: folder is not empty; choose a new folder")


def domain_name_for(target: Path) -> str:
    """A domain id from a folder name: `My Shop/` -> `my_shop`."""
    name = _NOT_A_NAME.sub("_", target.resolve().name.lower()).strip("_")
    return name or "my_domain"


def scaffold_domain(
    target: Path, source: Path, *, name: str | None = None, description: str | None = None
) -> Path:
    """Copy `source` into the empty folder `target` and set its name (default: the folder's)."""
    ensure_empty(target)
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise RapportError(f"{target}: cannot scaffold a domain inside its own source {source}")
    info = source / "domain.yaml"
    text = read_utf8(info, str(info)) if info.is_file() else None  # read before writing anything
    shutil.copytree(source, target, ignore=_IGNORED, dirs_exist_ok=True)
    if text is not None:
        text = set_top_level_value(text, "name", name or domain_name_for(target))
        if description is not None:
            text = set_top_level_value(text, "description", description)
        (target / "domain.yaml").write_text(text, encoding="utf-8")
    return target


def set_top_level_value(text: str, key: str, value: str) -> str:
    """Replace a top-level `key:` (with any indented continuation lines) by a quoted string,
    keeping every comment; the text is returned unchanged when there is no such key."""
    lines = text.splitlines(keepends=True)
    for start, line in enumerate(lines):
        if line.startswith(f"{key}:"):
            end = start + 1
            while end < len(lines) and (
                lines[end].startswith((" ", "\t")) or not lines[end].strip()
            ):
                end += 1
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1  # keep the blank lines that separate it from the next key
            replacement = f"{key}: {json.dumps(value, ensure_ascii=False)}\n"
            return "".join([*lines[:start], replacement, *lines[end:]])
    return text
