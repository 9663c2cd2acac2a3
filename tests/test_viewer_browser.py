"""`rapport view` in a real headless Chromium: the filters and paging a person clicks return the
right conversations, a review saved from the form is stored and moves the agreement figures,
hostile model text never runs as script, and the overview keeps refreshing while a run writes.
Skipped where no Chromium is installed (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import duckdb
import pytest

from tests.headless_browser import Browser, chromium_binary
from tests.viewer_helpers import judged_corpus, serving

CHROMIUM = chromium_binary()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH"),
]


def sql(db, statement: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(statement, list(params)).fetchall()


ROW_IDS = "[...document.querySelectorAll('tr.conversation')].map(r => r.dataset.id)"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return judged_corpus(tmp_path_factory.mktemp("browser"), 14)


def test_filters_and_paging_clicked_in_the_browser(corpus):
    db, _ = corpus
    failing = [
        cid
        for (cid,) in sql(
            db, "SELECT conversation_id FROM conversation_judgement WHERE NOT passed ORDER BY 1"
        )
    ]
    everyone = [cid for (cid,) in sql(db, "SELECT conversation_id FROM conversations ORDER BY 1")]

    async def drive(base: str) -> None:
        async with Browser(CHROMIUM) as browser:
            await browser.goto(base + "/conversations?per_page=5")
            assert await browser.evaluate(ROW_IDS) == everyone[:5]
            await browser.evaluate("document.querySelector('a[rel=next]').click()")
            await browser.wait_for(
                "document.getElementById('page').textContent.startsWith('page 2')"
            )
            assert await browser.evaluate(ROW_IDS) == everyone[5:10]
            await browser.evaluate(
                "document.querySelector('select[name=passed]').value = 'no';"
                "document.querySelector('input[name=page]')?.remove();"
                "document.querySelector('form.filters').submit()"
            )
            await browser.wait_for("location.search.includes('passed=no')")
            await browser.wait_for("document.body.dataset.ready === '1'")
            shown = await browser.evaluate(ROW_IDS)
            assert shown == failing[:5]
            total = await browser.evaluate("document.getElementById('total').textContent")
            assert total.startswith(f"{len(failing)} conversations")

    with serving(db) as viewer:
        asyncio.run(drive(viewer.base))


def test_hostile_model_text_does_not_run(corpus):
    db, hostile_id = corpus

    async def drive(base: str) -> None:
        async with Browser(CHROMIUM) as browser:
            await browser.goto(f"{base}/c/{hostile_id}")
            await asyncio.sleep(1)  # an <img onerror> fires once the image fails to load
            assert await browser.evaluate("document.body.dataset.pwned") is None
            assert await browser.evaluate("document.querySelectorAll('.turn img').length") == 0
            text = await browser.evaluate("document.querySelector('.turn .text').textContent")
            assert "<script>document.body.dataset.pwned" in text
            assert "onerror=" in text
            await browser.goto(f"{base}/conversations?q=xylophone")
            assert await browser.evaluate("document.body.dataset.pwned") is None

    with serving(db) as viewer:
        asyncio.run(drive(viewer.base))


def test_a_review_saved_from_the_form_is_stored_and_moves_the_agreement(corpus):
    db, hostile_id = corpus
    (judge_passed,) = sql(
        db, "SELECT passed FROM conversation_judgement WHERE conversation_id = ?", [hostile_id]
    )[0]
    disagree = "NO" if judge_passed else "YES"

    async def drive(base: str) -> None:
        async with Browser(CHROMIUM) as browser:
            await browser.goto(base + "/")
            await browser.evaluate("localStorage.setItem('rapport.reviewer', 'browser-ann')")
            await browser.goto(f"{base}/agreement")
            before = await browser.evaluate("document.body.innerText")
            assert "(pass rule)" not in before
            await browser.goto(f"{base}/c/{hostile_id}")
            await browser.evaluate(
                f"document.querySelector('input[name=overall][value={disagree}]').click();"
                "document.querySelector('input[name=\"c:CQ1\"][value=NA]').click();"
                "document.querySelector('textarea[name=note]').value = 'read in a browser';"
                "document.querySelector('button[value=stay]').click()"
            )
            await browser.wait_for(
                "document.getElementById('blind')?.textContent.startsWith('Saved')"
            )
            await browser.goto(f"{base}/agreement")
            after = await browser.evaluate("document.body.innerText")
            assert "(pass rule)" in after
            # the form comes back filled in with the reviewer's answers
            await browser.goto(f"{base}/c/{hostile_id}")
            checked = await browser.evaluate(
                "document.querySelector('input[name=overall]:checked').value"
            )
            assert checked == disagree

    with serving(db) as viewer:
        asyncio.run(drive(viewer.base))
    assert sql(
        db,
        "SELECT criterion_id, answer, note FROM human_verdicts WHERE reviewer = 'browser-ann' "
        "ORDER BY 1",
    ) == [("CQ1", "NA", "read in a browser"), ("overall", disagree, "read in a browser")]
    (agreement,) = sql(
        db,
        "SELECT percent_agreement FROM human_judge_agreement "
        "WHERE criterion_id = 'overall' AND judge_id = '(pass rule)'",
    )[0]
    assert agreement == 0.0


def test_the_overview_refreshes_while_a_run_writes(tmp_path):
    db, _ = judged_corpus(tmp_path, 2)
    env = {**os.environ, "RAPPORT_STORE_LEND_EVERY_S": "0.3", "RAPPORT_STORE_READER_WAIT_S": "30"}

    async def drive(base: str, run: subprocess.Popen[str]) -> list[str]:
        seen = []
        async with Browser(CHROMIUM) as browser:
            await browser.goto(base + "/")
            while run.poll() is None:
                seen.append(
                    await browser.evaluate(
                        "document.querySelector('main table td:nth-child(2)')?.textContent"
                    )
                )
                await asyncio.sleep(1)
            await asyncio.sleep(6)  # one more refresh after the run
            seen.append(
                await browser.evaluate(
                    "document.querySelector('main table td:nth-child(2)')?.textContent"
                )
            )
        return seen

    with serving(db, env=env) as viewer:
        run = subprocess.Popen(
            [sys.executable, "-m", "rapport", "generate", "--db", str(db), "--count", "300",
             "--turns", "3", "--backend", "simulated"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        seen = asyncio.run(drive(viewer.base, run))
        _, stderr = run.communicate()
    assert run.returncode == 0, stderr
    counts = [int(value.replace(",", "")) for value in seen if value]
    assert counts[-1] == 302, seen  # the refreshed page shows what the run stored
    assert len(set(counts)) >= 2, seen  # and it changed while the page was open
