"""Where `rapport sql` reads its query: the argument, stdin (`-`) or `--file`."""

from __future__ import annotations

import sys
from pathlib import Path

from rapport.config.errors import RapportError

STDIN = "-"


def sql_text(statement: str | None, file: Path | None) -> str:
    """The query text; exactly one source must be given, and a file must be UTF-8 text."""
    if (statement is None) == (file is None):
        raise RapportError("give the query as an argument, - (stdin) or --file PATH, once")
    if file is not None:
        return _read_file(file)
    assert statement is not None
    return sys.stdin.read() if statement == STDIN else statement


def _read_file(file: Path) -> str:
    if not file.is_file():
        raise RapportError(f"--file {file}: no such file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RapportError(
            f"--file {file}: not UTF-8 text (byte at offset {error.start})"
        ) from None
    except OSError as error:
        raise RapportError(f"--file {file}: cannot read it ({error.strerror})") from None
