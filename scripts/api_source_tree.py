"""Lets mkdocstrings find Rapport's modules: a mkdocs hook (`hooks:` in mkdocs.yml).

The installed package `rapport` is assembled from top-level folders (`package-dir` in
pyproject.toml: `rapport.config` is `config/`), which Python's import system follows but
griffe, the parser behind mkdocstrings, does not: it looks for `rapport/config/`. At build time
this hook lays out the package as griffe expects — a temporary folder whose `rapport/` links
each mapped folder under its package name — and points the Python handler's `paths` at it, so
the API reference is read from the working tree's source, never from an import.
"""

from __future__ import annotations

import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """pyproject.toml's package-dir mapping: dotted package name -> its folder."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def build_tree(target: Path, root: Path = ROOT) -> Path:
    """`target/rapport/...` laid out as the installed package is; returns `target`."""
    mapping = package_dirs(root)
    mapped = {name.rpartition(".")[2] for name in mapping if name.startswith("rapport.")}
    for name, folder in sorted(mapping.items()):
        link = target.joinpath(*name.split("."))
        if name == "rapport":  # the root package's own modules and folders, then the mapped ones
            link.mkdir(parents=True)
            for item in folder.iterdir():
                if item.name != "__pycache__" and item.name not in mapped:
                    (link / item.name).symlink_to(item, target_is_directory=item.is_dir())
        else:
            link.symlink_to(folder, target_is_directory=True)
    return target


_trees: list[Path] = []


try:  # the hook runs inside mkdocs; imported elsewhere (tests) it needs no mkdocs
    from mkdocs.plugins import event_priority
except ImportError:  # pragma: no cover

    def event_priority(_priority: int) -> Any:
        return lambda function: function


@event_priority(100)  # before mkdocstrings' own on_config, which builds the handler
def on_config(config: Any) -> Any:
    """Build the tree and make it the first place the Python handler looks."""
    tree = build_tree(Path(tempfile.mkdtemp(prefix="rapport-api-")))
    _trees.append(tree)
    handlers = config.plugins["mkdocstrings"].config.handlers
    python = handlers.setdefault("python", {})
    python["paths"] = [str(tree), *python.get("paths", [])]
    return config


def on_shutdown() -> None:
    """Remove the temporary trees (links only: the source is never touched)."""
    while _trees:
        shutil.rmtree(_trees.pop(), ignore_errors=True)
