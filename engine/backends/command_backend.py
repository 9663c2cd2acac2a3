"""The `command` backend: any CLI that reads a prompt on stdin and writes the reply on stdout.

The conversation is rendered as one plain-text prompt:

    <system text; several system messages are joined by a blank line>

    User: <user message>
    Assistant: <assistant message>
    User: <user message>
    Assistant:

Each transcript entry starts with its speaker's label (multi-line messages stay as they are),
and the prompt ends with the bare `Assistant:` cue. The reply is stdout, stripped.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import PurePath
from subprocess import PIPE

import anyio
import anyio.abc

from rapport.engine.backend import usage_or_estimate
from rapport.engine.backends.http_errors import short_message
from rapport.engine.errors import BackendError
from rapport.engine.types import ChatMessage, Completion, CompletionParams

SPEAKERS = {"user": "User", "assistant": "Assistant"}
CUE = "Assistant:"


def render_prompt(messages: Sequence[ChatMessage], params: CompletionParams) -> str:
    """The plain-text prompt described in the module docstring."""
    system = [m.content.strip() for m in messages if m.role == "system"]
    if params.json_schema is not None:
        schema = json.dumps(params.json_schema, separators=(",", ":"))
        system.append(
            "Reply with a single JSON value and nothing else (no prose, no code fences), "
            f"matching this JSON schema: {schema}"
        )
    transcript = [
        f"{SPEAKERS[m.role]}: {m.content.strip()}" for m in messages if m.role != "system"
    ]
    parts = ["\n\n".join(system)] if system else []
    parts.append("\n".join([*transcript, CUE]))
    return "\n\n".join(parts)


class CommandBackend:
    """Runs `argv` once per completion with the prompt on stdin. The process (and anything it
    started) is killed when it runs past `timeout_s`."""

    provider = "command"

    def __init__(self, *, argv: tuple[str, ...], timeout_s: float, model: str = "") -> None:
        if not argv:
            raise ValueError("the command backend needs a command to run")
        self.argv = tuple(argv)
        self.model = model or PurePath(argv[0]).name
        self._timeout_s = timeout_s

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        prompt = render_prompt(messages, params)
        started = time.perf_counter()
        timeout = params.timeout_s if params.timeout_s is not None else self._timeout_s
        returncode, stdout, stderr = await self._run(prompt.encode("utf-8"), timeout)
        latency = time.perf_counter() - started
        if returncode != 0:
            lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
            detail = f": {short_message(lines[-1])}" if lines else ""
            raise BackendError(
                "command_failed",
                f"{self.model} exited with code {returncode}{detail}",
                retryable=True,
            )
        text = stdout.decode("utf-8", errors="replace").strip()
        if not text:
            raise BackendError("empty", f"{self.model} printed nothing", retryable=True)
        prompt_tokens, completion_tokens = usage_or_estimate(len(prompt), text)  # none reported
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            model=self.model,
            provider=self.provider,
            finish_reason="stop",
        )

    async def _run(self, prompt: bytes, timeout_s: float) -> tuple[int, bytes, bytes]:
        """(exit code, stdout, stderr). The command gets its own process group, so a timeout
        or a cancellation kills whatever it spawned as well."""
        try:
            process = await anyio.open_process(
                self.argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, start_new_session=True
            )
        except OSError as error:  # not found, not executable, not a program
            reason = "not found" if isinstance(error, FileNotFoundError) else error.strerror
            raise BackendError(
                "command_not_found", f"cannot run {self.argv[0]}: {reason}", retryable=False
            ) from error
        output: dict[str, bytes] = {}
        finished = False
        try:
            with anyio.fail_after(timeout_s):
                async with anyio.create_task_group() as group:
                    group.start_soon(_drain, process.stdout, output, "stdout")
                    group.start_soon(_drain, process.stderr, output, "stderr")
                    await _feed(process, prompt)
                    returncode = await process.wait()
            finished = True
        except TimeoutError as error:
            raise BackendError(
                "timeout", f"{self.model} ran past {timeout_s:g}s", retryable=True
            ) from error
        finally:
            if not finished:
                _kill_group(process)
            with anyio.CancelScope(shield=True):
                await process.aclose()
        return returncode, output.get("stdout", b""), output.get("stderr", b"")

    async def aclose(self) -> None:
        return None


async def _feed(process: anyio.abc.Process, prompt: bytes) -> None:
    """Write the prompt and close stdin; a command that exits without reading it is fine."""
    assert process.stdin is not None
    try:
        await process.stdin.send(prompt)
        await process.stdin.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


async def _drain(
    stream: anyio.abc.ByteReceiveStream | None, output: dict[str, bytes], name: str
) -> None:
    chunks: list[bytes] = []
    if stream is not None:
        async for chunk in stream:
            chunks.append(chunk)
    output[name] = b"".join(chunks)


def _kill_group(process: anyio.abc.Process) -> None:
    """SIGKILL the command's process group (it leads its own session), else just the command."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - not POSIX
            process.kill()
    except ProcessLookupError:
        pass
