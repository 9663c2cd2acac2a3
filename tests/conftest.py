"""Shared fixtures: the shipped and tiny domains, temp databases, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.domain import Domain
from config.loader import load_domain

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
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
