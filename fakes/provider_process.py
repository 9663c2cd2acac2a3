"""The fake provider as a separate process, so a benchmark's client and server do not share a
core's Python interpreter."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from rapport.fakes.provider import FakeProviderSettings

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def provider_argv(settings: FakeProviderSettings, port: int) -> list[str]:
    """`rapport bench provider` with every setting as a flag."""
    argv = [sys.executable, "-m", "rapport", "bench", "provider", "--port", str(port)]
    for name, value in msgspec.structs.asdict(settings).items():
        if isinstance(value, tuple):
            if value:
                raise ValueError(f"{name} cannot be passed on the command line")
            continue
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif value is not None:
            argv += [f"--{flag}", str(value)]
    return argv


@contextmanager
def provider_process(settings: FakeProviderSettings) -> Iterator[str]:
    """Start the provider on a free loopback port; yields its base URL; stops it after."""
    port = free_port()
    process = subprocess.Popen(provider_argv(settings, port), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"fake provider exited with code {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("fake provider did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
