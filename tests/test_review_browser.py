"""The review-first page in a real headless Chromium: a 30-conversation queue walked with the
keyboard alone to its finished page, a second reviewer who sees nothing of the first before
saving, and a viewer beyond loopback that refuses a GET without its token. Skipped where no
Chromium is installed. RAPPORT_SCREENSHOTS=DIR saves the pages as PNGs there (docs/images)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import duckdb
import pytest

from rapport.store.review_queues import sample_queue
from tests.headless_browser import Browser, chromium_binary
from tests.viewer_helpers import judged_corpus, serving

CHROMIUM = chromium_binary()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH"),
]
QUEUE_SIZE = 30
SCREENSHOTS = os.environ.get("RAPPORT_SCREENSHOTS")

# CDP key events: (key, code, virtual key code, modifiers; 8 = Shift)
KEYS = {
    "y": ("y", "KeyY", 89, 0),
    "n": ("n", "KeyN", 78, 0),
    "a": ("a", "KeyA", 65, 0),
    "p": ("p", "KeyP", 80, 0),
    "f": ("f", "KeyF", 70, 0),
    "s": ("s", "KeyS", 83, 0),
    "S": ("S", "KeyS", 83, 8),
    "j": ("j", "KeyJ", 74, 0),
    "k": ("k", "KeyK", 75, 0),
    "?": ("?", "Slash", 191, 8),
    "ArrowDown": ("ArrowDown", "ArrowDown", 40, 0),
    "ArrowUp": ("ArrowUp", "ArrowUp", 38, 0),
}


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


async def press(browser: Browser, *names: str) -> None:
    """Keys as a person types them: keyDown (with the character) and keyUp."""
    for name in names:
        key, code, virtual, modifiers = KEYS[name]
        base = {"key": key, "code": code, "windowsVirtualKeyCode": virtual}
        base["modifiers"] = modifiers
        text = {"text": key} if len(key) == 1 else {}
        await browser.send("Input.dispatchKeyEvent", {"type": "keyDown", **base, **text})
        await browser.send("Input.dispatchKeyEvent", {"type": "keyUp", **base})


async def open_page(browser: Browser, url: str) -> None:
    """Navigate to `url` (which may redirect) and wait until the review script has run."""
    await browser.send("Page.navigate", {"url": url})
    await browser.wait_for("document.body && document.body.dataset.reviewReady === '1'")


async def as_reviewer(browser: Browser, base: str, name: str) -> None:
    await browser.goto(base + "/")
    await browser.evaluate(f"localStorage.setItem('rapport.reviewer', {json.dumps(name)})")


async def screenshot(browser: Browser, name: str) -> None:
    if SCREENSHOTS:
        shot = await browser.screenshot()
        folder = Path(SCREENSHOTS)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread((folder / f"{name}.png").write_bytes, shot)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    db, _ = judged_corpus(tmp_path_factory.mktemp("review-browser"), QUEUE_SIZE + 2)
    return db


def test_a_30_conversation_queue_walked_with_the_keyboard_alone_ends_finished(corpus):
    sample_queue(corpus, QUEUE_SIZE, queue="walk", strategy="random", seed=4)
    sample_queue(corpus, 5, queue="hard", strategy="disagreement", reviewer="kim", seed=4)
    queued = [cid for (cid,) in sql(corpus, "SELECT conversation_id FROM review_queue "
                                            "WHERE queue = 'walk' ORDER BY position")]  # fmt: skip
    assert len(queued) == QUEUE_SIZE
    criteria: list[str] = []

    async def drive(base: str) -> list[str]:
        seen = []
        async with Browser(CHROMIUM) as browser:
            await as_reviewer(browser, base, "keyboard-kim")
            await open_page(browser, base + "/queue/walk/next")
            # the form refuses a review with no criterion answered, in one line, and stays
            criteria.extend(
                await browser.evaluate(
                    "[...document.querySelectorAll('.criterion')].map(e => e.dataset.criterion)"
                )
            )
            assert len(criteria) >= 3
            await press(browser, "p", "S")
            error = await browser.wait_for(
                "!document.getElementById('form-error').hidden && "
                "document.getElementById('form-error').textContent"
            )
            assert error == "Answer at least one criterion (Y, N or A) before saving."
            assert "1 of 30" in await browser.evaluate(
                "document.getElementById('progress').textContent"
            )
            await press(browser, "?")
            assert await browser.evaluate("!document.getElementById('keys-help').hidden")
            await screenshot(browser, "review-keys")
            await press(browser, "?")
            for step in range(1, QUEUE_SIZE + 1):
                await browser.wait_for(
                    "document.body.dataset.reviewReady === '1' && document.getElementById"
                    f"('progress')?.textContent.startsWith('{step} of {QUEUE_SIZE} in queue walk')"
                )
                seen.append(await browser.evaluate("location.pathname.slice(3)"))
                # the first criterion yes (the next is focused), J and K there and back, the
                # second no, ↓ ↑ there and back, the third n/a; overall fail on odd steps
                await press(browser, "y", "j", "k", "n", "ArrowDown", "ArrowUp", "a")
                await press(browser, "f" if step % 2 else "p")
                if step == 2:
                    await screenshot(browser, "review-page")
                await press(browser, "S")
            await browser.wait_for("document.getElementById('queue-finished') !== null")
            text = await browser.evaluate("document.getElementById('queue-done').textContent")
            assert "keyboard-kim reviewed 30 of the 30 conversations" in text
            assert "15 passed, 15 failed" in text
            await screenshot(browser, "queue-finished")
            await browser.evaluate("document.getElementById('agreement-link').click()")
            await browser.wait_for("location.pathname === '/agreement'")
            await browser.goto(base + "/queue")
            await screenshot(browser, "review-queues")
        return seen

    with serving(corpus) as viewer:
        seen = asyncio.run(drive(viewer.base))
    assert seen == queued  # every conversation once, in the queue's order
    first, second, third = criteria[0], criteria[1], criteria[2]
    stored = sql(
        corpus,
        "SELECT criterion_id, answer, count(*) FROM human_verdicts "
        "WHERE reviewer = 'keyboard-kim' GROUP BY ALL ORDER BY ALL",
    )
    assert stored == sorted(
        [(first, "YES", 30), (second, "NO", 30), (third, "NA", 30),
         ("overall", "NO", 15), ("overall", "YES", 15)]
    )  # fmt: skip


def test_a_second_reviewer_sees_nothing_of_the_first_before_saving(corpus):
    (cid,) = sql(
        corpus,
        "SELECT min(conversation_id) FROM conversations "
        "WHERE conversation_id NOT IN (SELECT conversation_id FROM human_verdicts)",
    )[0]

    async def drive(base: str) -> None:
        async with Browser(CHROMIUM) as browser:
            await as_reviewer(browser, base, "first-fay")
            await open_page(browser, f"{base}/c/{cid}")
            await browser.evaluate(
                "document.querySelector('textarea[name=note]').value = 'fay-secret-note'"
            )
            await press(browser, "y", "f", "s")
            await browser.wait_for(
                "document.body.dataset.reviewReady === '1' && "
                "document.getElementById('blind').textContent.startsWith('Saved')"
            )
            await browser.evaluate("localStorage.setItem('rapport.reviewer', 'second-sam')")
            await open_page(browser, f"{base}/c/{cid}")
            html = await browser.evaluate("document.documentElement.outerHTML")
            assert "second-sam" in await browser.evaluate(
                "document.getElementById('reviewer-name').textContent"
            )
            assert "first-fay" not in html and "fay-secret-note" not in html
            assert (
                await browser.evaluate(
                    "document.querySelectorAll('#review-form input:checked').length"
                )
                == 0
            )  # nothing of fay's answers filled in either
            await screenshot(browser, "review-blind")
            await press(browser, "n", "p", "s")
            await browser.wait_for(
                "document.body.dataset.reviewReady === '1' && "
                "document.querySelector('li.other-review') !== null"
            )
            shown = await browser.evaluate("document.querySelector('li.other-review').textContent")
            assert shown.startswith("first-fay: fail") and "fay-secret-note" in shown
            # at 900 px the transcript and the rubric still sit side by side, no sideways scroll
            await browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 900, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            )
            await open_page(browser, f"{base}/c/{cid}")
            assert await browser.evaluate("document.documentElement.scrollWidth") <= 900
            assert await browser.evaluate(
                "document.querySelector('.rubric-side').getBoundingClientRect().top < 300"
            )
            await screenshot(browser, "review-900px")

    with serving(corpus) as viewer:
        asyncio.run(drive(viewer.base))
    assert sql(
        corpus,
        "SELECT reviewer, answer FROM human_verdicts WHERE criterion_id = 'overall' "
        "AND conversation_id = ? ORDER BY 1",
        [cid],
    ) == [("first-fay", "NO"), ("second-sam", "YES")]


def test_a_viewer_beyond_loopback_refuses_a_get_without_its_token(corpus):
    async def drive(base: str, address: str) -> None:
        async with Browser(CHROMIUM) as browser:
            await browser.send("Page.navigate", {"url": base + "/conversations"})
            await browser.wait_for(
                "location.pathname === '/conversations' && document.readyState === 'complete'"
            )
            text = await browser.evaluate("document.body.innerText")
            assert "403" in text and "needs its access token" in text
            assert (
                await browser.evaluate("document.querySelectorAll('tr.conversation').length") == 0
            )
            await browser.send("Page.navigate", {"url": address})
            await browser.wait_for(
                "location.pathname === '/' && document.body.dataset.ready === '1'"
            )
            assert "token" not in await browser.evaluate("location.href")
            await browser.goto(base + "/conversations")  # the cookie opens the next page
            assert await browser.evaluate("document.querySelectorAll('tr.conversation').length") > 0

    with serving(corpus, "--host", "0.0.0.0") as viewer:
        line = viewer.process.stdout.readline()
        token = re.search(r"\?token=([A-Za-z0-9_-]+)", line).group(1)
        asyncio.run(drive(viewer.base, f"{viewer.base}/?token={token}"))
