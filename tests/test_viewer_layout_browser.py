"""`rapport view` at 900 px in a real headless Chromium: every cell of a judge-vs-people matrix,
clicked, lists exactly its conversations, and no page scrolls sideways. Skipped where no
Chromium is installed (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import asyncio

import duckdb
import pytest

from tests.headless_browser import Browser, chromium_binary
from tests.viewer_helpers import judged_corpus, serving
from tests.viewer_reviews import review_corpus

CHROMIUM = chromium_binary()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH"),
]
WIDTH = 900
ROW_IDS = "[...document.querySelectorAll('tr.conversation')].map(r => r.dataset.id)"
CELLS = (
    "[...document.querySelectorAll('table.confusion')].flatMap(t => "
    "[...t.querySelectorAll('td.cell a')].map(a => [t.dataset.criterion, t.dataset.judge, "
    "a.closest('tr').rowIndex - 1, a.closest('td').cellIndex - 1, a.href, "
    "Number(a.dataset.conversations)]))"
)
ANSWERS = {"overall": ("YES", "NO")}


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    db, hostile_id = judged_corpus(tmp_path_factory.mktemp("layout"), 14)
    review_corpus(db)
    return db, hostile_id


async def narrow(browser: Browser) -> None:
    await browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )


def test_each_confusion_cell_link_lists_exactly_its_conversations(corpus):
    db, _ = corpus

    async def drive(base: str) -> list[tuple[tuple, list[str]]]:
        seen = []
        async with Browser(CHROMIUM) as browser:
            await narrow(browser)
            await browser.goto(base + "/agreement")
            cells = await browser.evaluate(CELLS)
            assert len(cells) >= 10
            for index, cell in enumerate(cells):
                await browser.goto(base + "/agreement")
                # click the cell itself, as a person would
                await browser.evaluate(
                    f"document.querySelectorAll('table.confusion td.cell a')[{index}].click()"
                )
                await browser.wait_for(f"location.href === {cell[4]!r}")
                await browser.wait_for("document.body.dataset.ready === '1'")
                rows = await browser.evaluate(ROW_IDS)
                total = await browser.evaluate("document.getElementById('total').textContent")
                seen.append((tuple(cell), rows, total))
        return seen

    with serving(db) as viewer:
        seen = asyncio.run(drive(viewer.base))
    for (criterion, judge, row, column, href, count), rows, total in seen:
        answers = ANSWERS.get(criterion, ("YES", "NO", "NA"))
        expected = [
            cid
            for (cid,) in sql(
                db,
                "SELECT DISTINCT conversation_id FROM human_judge_pairs WHERE criterion_id = ? "
                "AND judge_id = ? AND human_answer = ? AND judge_answer = ? ORDER BY 1",
                [criterion, judge, answers[row], answers[column]],
            )
        ]
        assert rows == expected, href
        assert count == len(expected) and total.startswith(f"{len(expected)} conversation")


def test_no_page_scrolls_sideways_at_900_px(corpus):
    db, hostile_id = corpus
    (failed,) = sql(db, "SELECT min(conversation_id) FROM conversation_judgement WHERE NOT passed")[
        0
    ]
    paths = [
        "/", "/conversations", "/conversations?passed=no", "/conversations?per_page=500",
        f"/c/{hostile_id}", f"/c/{failed}", "/queue", "/agreement", "/eval",
        "/conversations?criterion=CQ1&answered_by=a&person=YES&judge_answer=YES",
        "/conversations?page=99999",
    ]  # fmt: skip

    async def drive(base: str) -> dict[str, list[int]]:
        widths = {}
        async with Browser(CHROMIUM) as browser:
            await narrow(browser)
            for path in paths:
                await browser.goto(base + path)
                widths[path] = await browser.evaluate(
                    "[document.documentElement.scrollWidth, window.innerWidth]"
                )
        return widths

    with serving(db) as viewer:
        widths = asyncio.run(drive(viewer.base))
    assert {path: inner for path, (_, inner) in widths.items()} == dict.fromkeys(paths, WIDTH)
    wide = {path: scroll for path, (scroll, inner) in widths.items() if scroll > inner}
    assert wide == {}
