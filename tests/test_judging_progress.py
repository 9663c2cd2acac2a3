"""Judging shows live: the judge pool counts conversations waiting to be judged, being judged,
judged and with judge failures into the run's progress, and the live display shows them for
`rapport generate` and `rapport judge` alike."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import anyio
import msgspec
import pytest
from rich.console import Console

from rapport._live_table import progress_table
from rapport.config.prices import PriceTable
from rapport.engine.progress import JudgingProgress, RunProgress
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.generate import simulate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.stages.progress import LiveRun
from tests.test_judges import KEY_ENV, YES, _corpus, _judge_config
from tests.test_stage_layer import RecordingJudgeBackend, _generation


def _shown(progress: RunProgress) -> str:
    console = Console(record=True, width=200)
    console.print(progress_table(progress, {}, PriceTable({})))
    return console.export_text()


def test_conversations_waiting_for_a_busy_judge_are_counted_then_judged(db_path):
    count = 6
    release = anyio.Event()
    judge_backend = RecordingJudgeBackend([0], wait_for=release)
    generation, _ = _generation(db_path, count=count, max_active=3, judge_backend=judge_backend)
    progress = RunProgress(total=count)
    held: list[JudgingProgress] = []
    shown: list[str] = []

    async def display(run: LiveRun) -> None:
        # Polls as the live display does, until every conversation is generated and handed to
        # the judge, which answers nothing yet.
        while True:
            judging = progress.judging
            if progress.done == count and judging and judging.waiting + judging.active == count:
                break
            await anyio.sleep(0.01)
        held.append(msgspec.structs.replace(progress.judging))
        shown.append(_shown(progress))
        release.set()
        await anyio.sleep_forever()

    async def run():
        with anyio.fail_after(60):  # a deadlock guard, no timing
            return await simulate(generation, progress, display)

    summary = anyio.run(run)
    [before], [text] = held, shown
    assert before.judged == 0 and before.waiting + before.active == count and before.active >= 1
    assert f"{count}/{count} done" in text and "0 judged" in text
    assert f"{before.waiting:,} waiting · {before.active:,} judging" in text
    judging = progress.judging
    assert judging is not None and summary.judging is not None
    assert (judging.judged, judging.waiting, judging.active) == (count, 0, 0)
    assert judging.failed == judging.failed_conversations == 0
    assert judging.answered == summary.judging.answered_criteria > 0


def test_judge_failures_are_counted_per_conversation_and_criterion(db_path):
    judge_backend = RecordingJudgeBackend([0], broken=True)
    generation, _ = _generation(db_path, count=3, max_active=3, judge_backend=judge_backend)
    progress = RunProgress(total=3)
    summary = anyio.run(simulate, generation, progress)
    judging = progress.judging
    assert judging is not None and summary.judging is not None
    assert (judging.judged, judging.failed_conversations, judging.answered) == (3, 3, 0)
    assert judging.failed == summary.judging.failed_criteria > 0
    assert f"3 with judge failures ({judging.failed:,} criteria)" in _shown(progress)


def test_rapport_judge_counts_and_shows_the_same(tmp_path, db_path):
    _corpus(db_path, count=4)
    shown: list[RunProgress] = []

    async def display(run: LiveRun) -> None:
        assert list(run.gateways) == ["judge:http"]
        shown.append(run.progress)
        await anyio.sleep_forever()

    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, _):
        summary = judge_corpus(
            JudgeRequest(db=db_path, config=_judge_config(tmp_path, base_url)),
            {KEY_ENV: "k"},
            display=display,
        )
    [progress] = shown
    judging = progress.judging
    assert judging is not None
    assert (judging.judged, judging.waiting, judging.active) == (summary.judged, 0, 0) == (4, 0, 0)
    assert judging.answered == summary.answered_criteria == 4 * 3
    text = _shown(progress)
    assert "4 judged · 0 waiting · 0 judging · 0 with judge failures (0 criteria)" in text
    assert "conversations" not in text  # `rapport judge` plays none


@pytest.mark.slow
def test_the_judge_command_shows_judging_live_in_a_terminal(tmp_path, db_path):
    _corpus(db_path, count=2)
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, _):
        config = _judge_config(tmp_path, base_url)
        controller, terminal = pty.openpty()
        env = {**os.environ, KEY_ENV: "k", "COLUMNS": "200", "TERM": "xterm"}
        with subprocess.Popen(
            [sys.executable, "-m", "rapport", "judge", "--db", str(db_path), "--config", config],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=env,
        ) as process:
            os.close(terminal)
            screen = b""
            while True:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                screen += chunk
            out = process.stdout.read().decode() if process.stdout else ""
        os.close(controller)
    assert process.returncode == 0, screen.decode(errors="replace")
    assert "judged 2 conversation-judge pairs" in out
    text = screen.decode(errors="replace")
    assert "judging" in text and "2 judged · 0 waiting" in text
