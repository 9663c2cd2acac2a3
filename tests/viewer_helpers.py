"""A judged corpus with hostile model text, and `rapport view` serving it in a process of its own,
for the viewer's tests (HTTP and the browser)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from tests.conftest import rapport_in_process

# What a model could write: a script, and an image whose error handler runs script. Either one,
# run, marks the page's body; an escaped page shows them as text.
HOSTILE = (
    "<script>document.body.dataset.pwned = 'script'</script> and "
    '<img src="x" onerror="document.body.dataset.pwned = \'img\'"> so there'
)
HOSTILE_MARK = "xylophone"  # a word only the hostile message holds, to search for
JUDGES = (
    "judges:\n  - id: a\n    backend: {provider: simulated}\n"
    "  - id: b\n    backend: {provider: simulated, quality: 0.95}\n"
    "pass_rule: mean\n"
)


def judged_corpus(folder: Path, count: int = 12) -> tuple[Path, str]:
    """A corpus of `count` judged conversations; one user message holds HOSTILE. Returns the
    file and that conversation's id."""
    db = folder / "corpus.duckdb"
    made = rapport_in_process(
        "generate", "--db", str(db), "--count", str(count), "--turns", "2",
        "--backend", "simulated",
    )  # fmt: skip
    assert made.returncode == 0, made
    config = folder / "run.yaml"
    config.write_text(JUDGES)
    judged = rapport_in_process("judge", "--db", str(db), "--config", str(config))
    assert judged.returncode == 0, judged
    with duckdb.connect(str(db)) as conn:
        (hostile_id,) = conn.execute(
            "SELECT min(conversation_id) FROM conversations WHERE status = 'complete'"
        ).fetchone()
        conn.execute(
            "UPDATE messages SET content = ? WHERE conversation_id = ? AND turn_index = 0",
            [f"{HOSTILE} {HOSTILE_MARK}", hostile_id],
        )
    return db, hostile_id


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Viewer:
    def __init__(self, process: subprocess.Popen[str], base: str) -> None:
        self.process = process
        self.base = base

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), dict(error.headers)

    def token(self) -> str:
        _, page, _ = self.get("/")
        found = re.search(r"name='csrf-token' content='([^']+)'", page)
        assert found, page[:500]
        return found.group(1)

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        """A form POST; a redirect is not followed (its status and target come back)."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        data = urllib.parse.urlencode(fields).encode()
        try:
            with opener.open(self.base + path, data=data, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Location") or error.read().decode()


@contextmanager
def serving(db: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Viewer]:
    """`rapport view --db DB` on a free port until the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rapport", "view", "--db", str(db), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    viewer = Viewer(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"rapport view did not start: {process.communicate()}"
                    ) from None
                time.sleep(0.1)
        yield viewer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
