"""Ray, imported only when a command asks for it, and the connection to a cluster."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from rapport.config.constants import CLUSTER_PROBE_TIMEOUT_S
from rapport.config.errors import RapportError

LOCAL = "local"  # `--ray` with no address: a new local cluster


def require_ray() -> Any:
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise RapportError(
            "--ray needs Ray, which is not installed: install rapport[ray] "
            "(pip install 'rapport[ray]')"
        ) from None
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (`auto`, `ray://…`, host:port), or start a local one;
    reuses this process's connection if it has one. True when this call connected."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    _probe(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(
            address=None if address in (None, LOCAL) else address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,  # Ray's start-up notices are not the run's output
        )
    except (ConnectionError, ValueError, RuntimeError) as error:
        shown = address or "a local cluster"
        raise RapportError(f"--ray: cannot connect to {shown}: {error}") from None
    return True


def disconnect() -> None:
    require_ray().shutdown()


def _probe(address: str | None) -> None:
    """A HOST:PORT (or ray://HOST:PORT) nobody answers at is refused at once: Ray itself
    would retry for minutes, logging each try."""
    if address in (None, LOCAL, "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # Ray says what it makes of it
    try:
        with socket.create_connection((host, int(port)), timeout=CLUSTER_PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        raise RapportError(f"--ray: nothing answers at {address} ({error})") from None
