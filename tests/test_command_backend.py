"""The command backend: real subprocesses (the running Python) with the prompt on stdin."""

from __future__ import annotations

import os
import sys
import time

import anyio
import pytest

from engine.backends.command_backend import CommandBackend, render_prompt
from engine.errors import BackendError, TurnFailed
from engine.gateway import Gateway
from engine.types import ChatMessage, CompletionParams

PARAMS = CompletionParams(max_tokens=64, temperature=0.5)
MESSAGES = [
    ChatMessage("system", "You are a calm coach."),
    ChatMessage("user", "I can't sleep."),
    ChatMessage("assistant", "Since when?"),
    ChatMessage("user", "two weeks now"),
]
ECHO = (sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())")
SHOUT = (sys.executable, "-c", "import sys; print(sys.stdin.read()[-40:].upper())")


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


def test_a_command_past_its_timeout_is_killed_with_what_it_started(tmp_path):
    child_marker, grandchild_marker = tmp_path / "child-finished", tmp_path / "grandchild-finished"
    grandchild = f"import time; time.sleep(1); open({str(grandchild_marker)!r}, 'w').close()"
    child = _python(
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        "time.sleep(1)\n"
        f"open({str(child_marker)!r}, 'w').close()\n"
    )
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        _complete(CommandBackend(argv=child, timeout_s=0.3))
    assert time.monotonic() - started < 0.9
    assert caught.value.kind == "timeout" and caught.value.retryable
    time.sleep(1.2)
    assert not child_marker.exists() and not grandchild_marker.exists()


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
