"""The command backend: real subprocesses (the running Python) with the prompt on stdin."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import anyio
import psutil
import pytest

from rapport.engine.backends.command_backend import CommandBackend, render_prompt
from rapport.engine.errors import BackendError, TurnFailed
from rapport.engine.gateway import Gateway
from rapport.engine.types import ChatMessage, CompletionParams
from tests.clocks import advance_clock, run_with_settable_clock

PARAMS = CompletionParams(max_tokens=64, temperature=0.5)
MESSAGES = [
    ChatMessage("system", "You are a calm coach."),
    ChatMessage("user", "I can't sleep."),
    ChatMessage("assistant", "Since when?"),
    ChatMessage("user", "two weeks now"),
]
ECHO = (sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())")
SHOUT = (sys.executable, "-c", "import sys; print(sys.stdin.read()[-40:].upper())")
HANG_GUARD_S = 30  # bounds waits that only a broken build would make long; asserts no speed


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _complete(backend: CommandBackend, messages=MESSAGES, params=PARAMS):
    async def go():
        try:
            return await backend.complete(messages, params)
        finally:
            await backend.aclose()

    return anyio.run(go)


def test_prompt_is_rendered_as_a_transcript_ending_with_the_cue():
    assert render_prompt(MESSAGES, PARAMS) == (
        "You are a calm coach.\n\n"
        "User: I can't sleep.\n"
        "Assistant: Since when?\n"
        "User: two weeks now\n"
        "Assistant:"
    )
    assert render_prompt([ChatMessage("user", "hi")], PARAMS) == "User: hi\nAssistant:"


def test_json_schema_is_asked_for_in_the_prompt():
    params = CompletionParams(max_tokens=8, temperature=0, json_schema={"type": "object"})
    prompt = render_prompt(MESSAGES, params)
    assert prompt.startswith("You are a calm coach.\n\n") and '{"type":"object"}' in prompt


def test_prompt_reaches_stdin_and_stdout_is_the_reply():
    completion = _complete(CommandBackend(argv=ECHO, timeout_s=10))
    assert completion.text.startswith("You are a calm coach.")
    assert completion.text.endswith("User: two weeks now\nAssistant:")
    assert completion.provider == "command" and completion.model == os.path.basename(ECHO[0])
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert completion.latency_s > 0


def test_the_last_user_message_reaches_the_command():
    completion = _complete(CommandBackend(argv=SHOUT, timeout_s=10, model="shouter"))
    assert "TWO WEEKS NOW" in completion.text and completion.text == completion.text.strip()
    assert completion.model == "shouter"


def _starting_a_grandchild(pids_file: Path) -> tuple[str, ...]:
    """A command that starts a grandchild, writes both pids to `pids_file` (whole, by rename),
    then sleeps far longer than any test waits; the grandchild outlives it by far, so a build
    that only waits for the command to end still leaves the grandchild running."""
    grandchild = "import time; time.sleep(600)"
    written = f"{pids_file}.tmp"
    return _python(
        "import os, subprocess, sys, time\n"
        f"grandchild = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        f"open({written!r}, 'w').write(f'{{os.getpid()}} {{grandchild.pid}}')\n"
        f"os.replace({written!r}, {str(pids_file)!r})\n"
        "time.sleep(60)\n"
    )


async def _pids_once_written(pids_file: Path) -> list[int]:
    written = anyio.Path(pids_file)
    with anyio.fail_after(HANG_GUARD_S):  # only so that a command that never starts fails
        # Another process writes it: nothing to wait on but the file itself.
        while not await written.exists():  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return [int(pid) for pid in (await written.read_text()).split()]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def _assert_all_killed(pids: list[int]) -> None:
    """SIGKILL lands at once but is not synchronous: poll (bounded) until all are dead."""
    deadline = time.monotonic() + HANG_GUARD_S
    while (survivors := [pid for pid in pids if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in survivors:  # leave nothing behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"still running after the command was killed: {survivors}"


def test_a_command_past_its_timeout_is_killed_with_what_it_started(tmp_path):
    pids_file = tmp_path / "pids"
    backend = CommandBackend(argv=_starting_a_grandchild(pids_file), timeout_s=3600)

    async def go() -> tuple[BackendError, list[int]]:
        pids: list[int] = []

        async def run_out_the_clock() -> None:
            pids.extend(await _pids_once_written(pids_file))
            advance_clock(3600)  # both processes are up: now the command is past its timeout

        async with anyio.create_task_group() as group:
            group.start_soon(run_out_the_clock)
            with pytest.raises(BackendError) as caught:
                await backend.complete(MESSAGES, PARAMS)
        return caught.value, pids

    error, pids = run_with_settable_clock(go)
    assert error.kind == "timeout" and error.retryable and "ran past 3600s" in str(error)
    _assert_all_killed(pids)


def test_a_cancelled_command_is_killed_with_what_it_started(tmp_path):
    pids_file = tmp_path / "pids"
    backend = CommandBackend(argv=_starting_a_grandchild(pids_file), timeout_s=3600)

    async def go() -> list[int]:
        async with anyio.create_task_group() as group:
            group.start_soon(backend.complete, MESSAGES, PARAMS)
            pids = await _pids_once_written(pids_file)
            group.cancel_scope.cancel()  # as Ctrl-C or a failing sibling would
        return pids

    _assert_all_killed(anyio.run(go))


def test_a_failing_command_reports_its_exit_code_and_last_stderr_line():
    failing = _python(
        "import sys; sys.stderr.write('warming up\\nmodel file missing\\n'); sys.exit(3)"
    )
    with pytest.raises(BackendError) as caught:
        _complete(CommandBackend(argv=failing, timeout_s=10, model="llm"))
    error = caught.value
    assert error.kind == "command_failed" and error.retryable
    assert "exited with code 3" in str(error) and str(error).endswith("model file missing")
    assert "warming up" not in str(error)


def test_a_command_that_prints_nothing_is_an_empty_retryable_failure():
    silent = _python("import sys; sys.stdin.read(); print('   ')")
    with pytest.raises(BackendError) as caught:
        _complete(CommandBackend(argv=silent, timeout_s=10))
    assert caught.value.kind == "empty" and caught.value.retryable


def test_a_command_that_ignores_stdin_still_works():
    completion = _complete(CommandBackend(argv=_python("print('fixed reply')"), timeout_s=10))
    assert completion.text == "fixed reply"


def test_a_missing_command_is_not_retryable(tmp_path):
    missing = str(tmp_path / "no-such-llm-binary")
    with pytest.raises(BackendError) as caught:
        _complete(CommandBackend(argv=(missing, "--flag"), timeout_s=10))
    assert caught.value.kind == "command_not_found" and not caught.value.retryable
    assert caught.value.retryable is False and missing in str(caught.value)
    assert CommandBackend(argv=(missing,), timeout_s=1).model == "no-such-llm-binary"


def test_the_gateway_retries_a_failing_command_once(tmp_path):
    counter = tmp_path / "attempts"
    flaky = _python(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "sys.stdin.read()\n"
        "if n <= 0:\n"
        "    sys.exit('first attempt fails')\n"
        "print('second attempt works')\n"
    )
    gateway = Gateway(
        CommandBackend(argv=flaky, timeout_s=10),
        max_retries=1,
        backoff_min_s=0.01,
        backoff_max_s=0.05,
    )

    async def go():
        try:
            return await gateway.complete(MESSAGES, PARAMS)
        finally:
            await gateway.aclose()

    completion = anyio.run(go)
    assert completion.text == "second attempt works"
    assert counter.read_text() == "2" and gateway.stats.retries == 1

    counter.write_text("-5")  # now it keeps failing: one retry, then the turn fails
    always = Gateway(CommandBackend(argv=flaky, timeout_s=10), max_retries=1, backoff_min_s=0.01)
    with pytest.raises(TurnFailed) as caught:
        anyio.run(always.complete, MESSAGES, PARAMS)
    assert caught.value.kind == "command_failed" and caught.value.attempts == 2
