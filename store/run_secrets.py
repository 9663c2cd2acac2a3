"""The redactor of a command that only reads a database (`stats`, `sql`, `report`, `dataset
build`): it has no run config of its own, so it takes the `api_key_env` variables that the stored
runs' settings name, besides the always-known ones (see config.secrets)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb
import msgspec

from rapport.config.secrets import Redactor
from rapport.store.database import connect
from rapport.store.errors import StoreError


def stored_key_env_names(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Every `api_key_env` named in the settings of the runs stored here."""
    names: set[str] = set()
    for (settings,) in conn.execute(
        "SELECT DISTINCT settings FROM runs WHERE settings IS NOT NULL"
    ).fetchall():
        try:
            names.update(_key_env_values(msgspec.json.decode(settings)))
        except msgspec.DecodeError:
            continue
    return names


def _key_env_values(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "api_key_env" and isinstance(value, str):
                yield value
            else:
                yield from _key_env_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _key_env_values(item)


def database_redactor(db: Path, environ: Mapping[str, str]) -> Redactor:
    """The redactor for output read from `db`. A file that cannot be read (missing, not a
    Rapport database) gives the environment's redactor: the command itself reports the problem."""
    try:
        conn = connect(db, read_only=True)
    except StoreError:
        return Redactor.from_environ(environ)
    try:
        names = stored_key_env_names(conn)
    except duckdb.Error:
        names = set()
    finally:
        conn.close()
    return Redactor.from_environ(environ, names)
