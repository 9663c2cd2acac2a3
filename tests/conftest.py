"""Shared fixtures: the shipped and tiny domains, temp databases, the CLI in a subprocess or in
this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from rapport.config.domain import Domain
from rapport.config.loader import load_domain

TESTS = Path(__file__).parent
TINY_DOMAIN = TESTS / "domains" / "tiny"


@pytest.fixture(scope="session")
def therapy() -> Domain:
    return load_domain()


@pytest.fixture(scope="session")
def tiny() -> Domain:
    return load_domain(TINY_DOMAIN)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "rapport.duckdb"


def rapport(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `rapport` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "rapport", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def rapport_in_process(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `rapport ARGS` through the console script's own entry point in this process, its
    streams captured by typer's CliRunner: the same one-line errors and exit codes as
    `rapport()`, without a Python start and ~1.4 s of imports per call."""
    from rapport.cli.main import run as rapport_entry_point  # imports every stage: only when called

    runner = CliRunner()
    saved_argv = sys.argv
    with runner.isolation(input=stdin, env={"COLUMNS": "200", **(env or {})}) as (
        stdout,
        stderr,
        _,
    ):
        sys.argv = ["rapport", *args]
        try:
            rapport_entry_point()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        finally:
            sys.argv = saved_argv
            sys.stdout.flush()  # the captured streams are buffered text wrappers
            sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    return subprocess.CompletedProcess(["rapport", *args], code, out, err)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The non-blank lines a command wrote to stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()]


class HeldWrites:
    """Holds a Database's batch writes until `release` is set: a commit under way, on demand
    (`committing` is set once the first one waits)."""

    def __init__(self, database) -> None:
        self.committing, self.release = anyio.Event(), anyio.Event()
        write = database.write

        async def held_write(batch):
            self.committing.set()
            await self.release.wait()
            return await write(batch)

        database.write = held_write
