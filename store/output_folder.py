"""Output folders (datasets, reports) that never clobber what the user put there and are never
left half-written.

An output is built in a hidden staging folder beside its destination and renamed into place at
the end, with a small manifest (`.rapport-output.json`) naming what made it and every file it
wrote. A destination is replaced without asking only when it is empty or is Rapport's own output
of the same kind, holding nothing but the files that output wrote; anything else needs
`--overwrite`.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import msgspec

from rapport.config.errors import RapportError
from rapport.store.stamp import rapport_version

MANIFEST = ".rapport-output.json"
_STAGING = "rapport-staging"
_RETIRED = "rapport-replaced"
_SHOWN_FILES = 3


class Manifest(msgspec.Struct, frozen=True):
    kind: str  # e.g. "dataset:parquet", "report", "eval-report"
    rapport_version: str
    files: tuple[str, ...]  # paths relative to the folder, the manifest left out


def check_output_folder(
    out: Path,
    kind: str,
    *,
    overwrite: bool,
    keep: Sequence[Path] = (),
    flag: str = "--out",
) -> None:
    """Refuse, before any work, a destination that is a file, or a folder that holds anything
    but a previous output of this kind (unless `overwrite`). With `overwrite`, still refuse a
    folder holding the working directory or one of the `keep` paths (the database, the
    tokenizer): replacing it would delete them."""
    if out.exists() and not out.is_dir():
        raise RapportError(f"{flag} {out}: is a file, not a folder")
    if not out.exists():
        return
    if overwrite:
        named = [(str(path), path) for path in keep] + [("the current folder", Path.cwd())]
        for shown, precious in named:
            if precious.resolve().is_relative_to(out.resolve()):
                raise RapportError(
                    f"{flag} {out}: refusing to replace a folder that holds {shown}; "
                    "choose another folder"
                )
        return
    problem = _why_not_replaceable(out, kind)
    if problem:
        raise RapportError(
            f"{flag} {out}: {problem}; choose an empty or new folder, or add --overwrite "
            "to replace it"
        )


@contextmanager
def staged_output(
    out: Path,
    kind: str,
    *,
    overwrite: bool,
    keep: Sequence[Path] = (),
    flag: str = "--out",
) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; when the block succeeds, stamp it with the
    manifest and put it in place of `out`. On any error or interrupt `out` is left as it was."""
    check_output_folder(out, kind, overwrite=overwrite, keep=keep, flag=flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(out, _STAGING)
    staging.mkdir()
    try:
        yield staging
        files = tuple(sorted(str(p.relative_to(staging)) for p in _files(staging)))
        manifest = Manifest(kind, rapport_version(), files)
        (staging / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        check_output_folder(out, kind, overwrite=overwrite, keep=keep, flag=flag)
        _replace(out, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(out: Path, staging: Path) -> None:
    """Two renames: at every moment `out` is the old output, absent, or the new one."""
    if not out.exists():
        staging.rename(out)
        return
    retired = _sibling(out, _RETIRED)
    out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def _sibling(out: Path, role: str) -> Path:
    return out.parent / f".{out.name}.{role}-{secrets.token_hex(4)}"


def _why_not_replaceable(out: Path, kind: str) -> str | None:
    """None when `out` is empty or Rapport's own `kind` output with only its own files."""
    entries = sorted(entry.name for entry in out.iterdir())
    if not entries:
        return None
    manifest = _read_manifest(out)
    if manifest is None:
        return f"the folder is not empty ({_listed(entries)}) and is not a Rapport output"
    if manifest.kind != kind:
        return f"the folder holds a Rapport {manifest.kind} output, not {kind}"
    written = set(manifest.files)
    added = sorted(
        name
        for path in _files(out)
        if (name := str(path.relative_to(out))) != MANIFEST and name not in written
    )
    if added:
        return f"the folder holds files Rapport did not write ({_listed(added)})"
    return None


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:_SHOWN_FILES]) + (", …" if len(names) > _SHOWN_FILES else "")


def _read_manifest(out: Path) -> Manifest | None:
    try:
        return msgspec.json.decode((out / MANIFEST).read_bytes(), type=Manifest)
    except (OSError, msgspec.DecodeError):
        return None


def _files(folder: Path) -> Iterator[Path]:
    """Every file, link and empty folder below `folder` (a bare folder is content too)."""
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_dir() or not any(path.iterdir()):
            yield path
