"""The public API in a real Jupyter kernel (ipykernel, driven by jupyter_client as a notebook
front end drives it): the sync methods inside the kernel's running loop, `await corpus.agenerate`,
the kernel's interrupt (Ctrl-C in a notebook) leaving the run stored, `interrupted` and
resumable, and an error whose message is the line the command line prints. The quickstart
notebook is executed cell by cell with nbclient, as CI runs it."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from rapport.store.database import connect
from tests.conftest import error_lines
from tests.conftest import rapport as rapport_cli

jupyter_client = pytest.importorskip("jupyter_client")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytestmark = pytest.mark.slow  # a kernel per test module: more than 20 s in all

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebooks" / "quickstart.ipynb"
REPLY_S = 300  # the most a cell may take (a kernel start, a small simulated run)


class Kernel:
    """One running kernel and its client: run a cell, read what it printed and raised."""

    def __init__(self) -> None:
        self.manager, self.client = jupyter_client.manager.start_new_kernel(kernel_name="python3")

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def start(self, code: str) -> str:
        """Send a cell without waiting for it; its message id."""
        return self.client.execute(code)

    def finish(self, msg_id: str) -> dict[str, object]:
        """Wait for the cell's end: its status, what it printed, and its error if any."""
        reply = self._reply(msg_id)
        printed, error = [], None
        while True:
            try:
                message = self.client.get_iopub_msg(timeout=5)
            except queue.Empty:
                break
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "execute_result":
                printed.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                error = content
            elif kind == "status" and content["execution_state"] == "idle":
                break
        return {"status": reply["content"]["status"], "printed": "".join(printed), "error": error}

    def run(self, code: str) -> dict[str, object]:
        return self.finish(self.start(code))

    def _reply(self, msg_id: str) -> dict:
        deadline = time.monotonic() + REPLY_S
        while time.monotonic() < deadline:
            try:
                reply = self.client.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
        raise AssertionError(f"no reply to the cell within {REPLY_S} s")


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    running = Kernel()
    try:
        assert running.run("import json\nimport rapport")["status"] == "ok"
        yield running
    finally:
        running.close()


def _value(result: dict[str, object]) -> object:
    assert result["status"] == "ok", result["error"]
    return json.loads(str(result["printed"]).strip().splitlines()[-1])


def test_the_kernel_runs_cells_inside_a_running_loop(kernel):
    result = kernel.run(
        "import asyncio, json; print(json.dumps(asyncio.get_running_loop().is_running()))"
    )
    assert _value(result) is True


def test_sync_methods_work_inside_the_kernels_loop(kernel, tmp_path):
    db = tmp_path / "sync.duckdb"
    result = kernel.run(
        f"corpus = rapport.open({str(db)!r})\n"
        "run = corpus.generate(count=4, turns=2, backend='simulated', seed=1)\n"
        "judged = corpus.judge(judges=['simulated'])\n"
        "frame = corpus.sql('SELECT count(*) AS n FROM conversations').df()\n"
        "print(json.dumps([run.complete, judged.judged, int(frame['n'][0])]))"
    )
    assert _value(result) == [4, 8, 4]


def test_await_agenerate_runs_on_the_kernels_loop(kernel, tmp_path):
    db = tmp_path / "await.duckdb"
    result = kernel.run(
        f"acorpus = rapport.open({str(db)!r})\n"
        "run = await acorpus.agenerate(count=3, turns=2, backend='simulated', seed=2)\n"
        "judged = await acorpus.ajudge(judges=['simulated'], progress=False)\n"
        "print(json.dumps([run.complete, judged.judged]))"
    )
    assert _value(result) == [3, 6]


def _messages(db: Path) -> int:
    """Turns stored so far, read as another process reads a running corpus."""
    if not db.exists():
        return 0
    try:
        conn = connect(db, read_only=True)
    except duckdb.Error:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    except duckdb.Error:
        return 0
    finally:
        conn.close()


def _interrupt_once_turns_are_stored(kernel: Kernel, db: Path, cell: str) -> dict[str, object]:
    msg_id = kernel.start(cell)
    deadline = time.monotonic() + REPLY_S
    while _messages(db) == 0:
        assert time.monotonic() < deadline, "the run stored nothing"
        time.sleep(0.05)
    kernel.manager.interrupt_kernel()  # what the notebook's stop button sends
    return kernel.finish(msg_id)


def _runs(db: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute("SELECT command, status FROM runs ORDER BY started_at").fetchall()


SLOW = "backend='simulated:latency_ms=200', max_active=4, turns=3, seed=5"


def test_the_kernels_interrupt_stops_a_sync_run_stored_and_resumable(kernel, tmp_path):
    db = tmp_path / "interrupted.duckdb"
    kernel.run(f"icorpus = rapport.open({str(db)!r})")
    stopped = _interrupt_once_turns_are_stored(
        kernel, db, f"icorpus.generate(count=40, {SLOW}, progress=False)"
    )
    assert stopped["status"] == "error"
    assert stopped["error"]["ename"] == "RunInterrupted"
    assert "run the same command again to resume" in stopped["error"]["evalue"]
    assert _runs(db) == [("generate", "interrupted")]
    resumed = kernel.run(
        f"run = icorpus.generate(count=40, {SLOW}, progress=False)\n"
        "print(json.dumps([run.complete, run.count]))"
    )
    assert _value(resumed) == [40, 40]
    assert [status for _, status in _runs(db)] == ["interrupted", "finished"]
    with duckdb.connect(str(db), read_only=True) as conn:  # nothing lost or played twice
        assert conn.execute(
            "SELECT count(*) FROM (SELECT conversation_id, turn_index FROM messages "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone() == (0,)


def test_the_kernels_interrupt_stops_an_awaited_run_stored(kernel, tmp_path):
    db = tmp_path / "awaited.duckdb"
    kernel.run(f"wcorpus = rapport.open({str(db)!r})")
    stopped = _interrupt_once_turns_are_stored(
        kernel, db, f"await wcorpus.agenerate(count=40, {SLOW}, progress=False)"
    )
    assert stopped["status"] == "error"
    # the kernel cancels the awaiting cell: the await ends as cancelled (a `move_on_after`
    # around it must still move on), once the run has stopped cleanly
    assert stopped["error"]["ename"] == "CancelledError"
    assert _runs(db) == [("generate", "interrupted")]
    resumed = kernel.run(
        f"run = await wcorpus.agenerate(count=40, {SLOW}, progress=False)\n"
        "print(json.dumps(run.complete))"
    )
    assert _value(resumed) == 40


def test_an_error_in_the_kernel_says_what_the_cli_says(kernel, tmp_path):
    db = tmp_path / "error.duckdb"
    missing = tmp_path / "missing.yaml"
    result = kernel.run(
        f"ecorpus = rapport.open({str(db)!r})\n"
        f"ecorpus.generate(count=2, config={str(missing)!r}, progress=False)"
    )
    assert result["status"] == "error"
    assert result["error"]["ename"] == "ConfigError"
    cli = rapport_cli("generate", "--db", str(db), "--count", "2", "--config", str(missing))
    assert cli.returncode != 0
    assert error_lines(cli) == [f"error: {result['error']['evalue']}"]


def test_the_quickstart_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    client = nbclient.NotebookClient(
        notebook,
        timeout=REPLY_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
    assert (tmp_path / "quickstart.duckdb").is_file()
