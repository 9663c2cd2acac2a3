"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client; no
playwright needed): open a page, run a line of JavaScript in it, wait for a condition."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium_binary() -> str | None:
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


class Browser:
    """One headless browser with one tab, for the life of an `async with`."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._ids = itertools.count(1)

    def _launch(self) -> None:
        # Chromium's helpers (zygote, renderer, crashpad) may still write to the profile as they
        # exit; the profile is removed only once all of them are gone (see _stop).
        self._profile = tempfile.TemporaryDirectory(prefix="rapport-chromium-")
        self.process = subprocess.Popen(
            [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile.name}", "--window-size=1300,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    async def __aenter__(self) -> Browser:
        self._launch()
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(target for target in targets if target["type"] == "page")
        self._socket = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._socket.close()
        await self._session.close()
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        """End Chromium and every process it started (its own process group), wait until they
        are gone, then remove the profile: a helper still writing to it as it exits made the
        removal fail with "Directory not empty"."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if _group_running(self.process.pid, within_s=10):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            _group_running(self.process.pid, within_s=10)
        self._profile.cleanup()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        call = next(self._ids)
        await self._socket.send_str(
            json.dumps({"id": call, "method": method, "params": params or {}})
        )
        while True:
            message = json.loads((await self._socket.receive(timeout=60)).data)
            if message.get("id") == call:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within_s: float = 30) -> Any:
        """Until `expression` is truthy in the page (across navigations)."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:  # the page is between documents
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true: {expression}")
            await asyncio.sleep(0.1)

    async def goto(self, url: str) -> None:
        """Open `url` and wait until its script has run (body[data-ready])."""
        await self.send("Page.navigate", {"url": url})
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete' "
            "&& document.body.dataset.ready === '1'"
        )

    async def screenshot(self) -> bytes:
        """The visible page as PNG."""
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(shot["data"])


def _group_running(group: int, within_s: float) -> bool:
    """Whether a process of `group` still runs after waiting up to `within_s` (a zombie has
    exited: it writes nothing, and an orphan's zombie is reaped by whoever adopted it)."""
    deadline = time.monotonic() + within_s
    while True:
        running = False
        for process in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                if (
                    os.getpgid(process.pid) == group
                    and process.info["status"] != psutil.STATUS_ZOMBIE
                ):
                    running = True
                    break
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.05)
