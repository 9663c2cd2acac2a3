"""The stage layer: judging is its own pool inside the run session (it never holds a
conversation's slot, and its errors are judge failures), the criteria of one conversation are
asked at once, and the session's finish runs even when the run is cancelled."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import duckdb
import msgspec

from rapport.config.prices import load_prices
from rapport.config.run import JudgeConfig, StoreSettings
from rapport.config.secrets import Redactor
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from rapport.judges.judge import Judge
from rapport.stages.generate import GenerateRequest, Generation, prepare, simulate, store_plan
from rapport.stages.session import RunSession, new_run_id, role_snapshots, run_record
from rapport.store.database import Database
from tests.conftest import TINY_DOMAIN

YES = '{"reasoning": "fine", "answer": "YES"}'
TURNS = 2
CALLS_PER_CONVERSATION = 2 * TURNS  # the user simulator's turns and the assistant's


class CountingBackend:
    """Generation: counts calls in flight, and the most seen while a judge call was in flight."""

    provider = "counting"
    model = "gen"

    def __init__(self, judge_in_flight: list[int], total_calls: int) -> None:
        self.judge_in_flight = judge_in_flight
        self.total_calls = total_calls
        self.in_flight = 0
        self.calls = 0
        self.most_while_judging = 0
        self.done = anyio.Event()
        self.closed = False

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        self.in_flight += 1
        try:
            for _ in range(5):  # give every other active conversation its turn to call
                await anyio.lowlevel.checkpoint()
                if self.judge_in_flight[0]:
                    self.most_while_judging = max(self.most_while_judging, self.in_flight)
            return Completion("a turn", 1, 1, 0.0, self.model, self.provider, "stop")
        finally:
            self.in_flight -= 1
            self.calls += 1
            if self.calls == self.total_calls:
                self.done.set()

    async def aclose(self) -> None:
        self.closed = True


class RecordingJudgeBackend:
    """A judge: records how many of its calls overlap; optionally slower than generation
    (answers only once generation is done) or broken (raises what no backend should)."""

    provider = "recording"
    model = "judge"

    def __init__(
        self, in_flight: list[int], wait_for: anyio.Event | None = None, broken: bool = False
    ) -> None:
        self.in_flight = in_flight  # shared with the generation backend
        self.wait_for = wait_for
        self.broken = broken
        self.most = 0
        self.calls = 0

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        self.in_flight[0] += 1
        self.calls += 1
        try:
            if self.broken:
                raise RuntimeError("a bug in judging")
            self.most = max(self.most, self.in_flight[0])
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
                self.most = max(self.most, self.in_flight[0])
            if self.wait_for is not None:
                await self.wait_for.wait()
            return Completion(YES, 1, 1, 0.0, self.model, self.provider, "stop")
        finally:
            self.in_flight[0] -= 1

    async def aclose(self) -> None:
        return None


def _generation(
    db_path, count: int, max_active: int, judge_backend
) -> tuple[Generation, CountingBackend]:
    generation = prepare(
        GenerateRequest(
            db=db_path,
            count=count,
            turns=TURNS,
            backend="simulated",
            domain=TINY_DOMAIN,
            max_active=max_active,
        )
    )
    backend = CountingBackend(judge_backend.in_flight, count * CALLS_PER_CONVERSATION)
    gateway = Gateway(backend)
    judge = Judge(JudgeConfig(id="rec"), Gateway(judge_backend))
    generation = msgspec.structs.replace(
        generation, gateways={"user_sim": gateway, "assistant": gateway}, judges=(judge,)
    )
    store_plan(generation)
    return generation, backend


def _rows(db_path, sql: str):
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_an_error_in_judging_is_a_judge_failure_not_a_failed_conversation(db_path):
    judge_backend = RecordingJudgeBackend([0], broken=True)
    generation, _ = _generation(db_path, count=3, max_active=3, judge_backend=judge_backend)
    summary = anyio.run(simulate, generation, RunProgress(total=3))
    assert summary.complete == 3 and summary.failed == 0
    assert _rows(db_path, "SELECT DISTINCT status FROM conversations") == [("complete",)]
    assert _rows(db_path, "SELECT count(*) FROM errors") == [(0,)]
    failures = _rows(db_path, "SELECT DISTINCT judge_id, error FROM judge_failures")
    assert failures == [("rec", "internal:RuntimeError: a bug in judging")]
    assert _rows(db_path, "SELECT count(DISTINCT conversation_id) FROM judge_failures") == [(3,)]
    assert summary.judging is not None and summary.judging.failed_criteria > 0
    assert _rows(db_path, "SELECT status FROM runs") == [("finished",)]


def test_slow_judges_never_take_generation_slots(db_path):
    max_active = 4
    judge_in_flight = [0]
    judge_backend = RecordingJudgeBackend(judge_in_flight)
    generation, backend = _generation(
        db_path, count=12, max_active=max_active, judge_backend=judge_backend
    )
    judge_backend.wait_for = backend.done  # judging ends only after all generation is done

    async def run():
        with anyio.fail_after(30):  # a deadlock guard (judging holding every slot), no timing
            return await simulate(generation, RunProgress(total=12))

    summary = anyio.run(run)
    assert summary.complete == 12
    # While judges were busy, as many conversations generated as --max-active allows.
    assert backend.most_while_judging == max_active
    assert _rows(db_path, "SELECT count(*) FROM assessments") == [(12,)]


def test_the_criteria_of_one_conversation_are_asked_at_once(db_path):
    judge_backend = RecordingJudgeBackend([0])
    generation, _ = _generation(db_path, count=1, max_active=1, judge_backend=judge_backend)
    summary = anyio.run(simulate, generation, RunProgress(total=1))
    assert summary.judging is not None and summary.judging.answered_criteria == judge_backend.calls
    assert judge_backend.calls > 1
    assert judge_backend.most == judge_backend.calls  # every criterion in flight together
    assert _rows(db_path, "SELECT count(*) FROM assessments") == [(1,)]


def test_the_session_finish_stores_stats_and_closes_gateways_when_cancelled(db_path):
    database = Database(db_path)
    database.initialise()
    backend = CountingBackend([0], total_calls=1)
    gateway = Gateway(backend)
    session = RunSession(
        database,
        run_record(new_run_id(), "generate", "plan", 1, "counting", "counting", StoreSettings()),
        Redactor.from_environ({}),
        StoreSettings(),
        role_snapshots({"user_sim": gateway, "assistant": gateway}, load_prices()),
        [gateway, gateway],
    )

    async def main() -> None:
        with anyio.CancelScope() as scope:

            async def work(session: RunSession) -> None:
                await gateway.complete(
                    [ChatMessage("user", "hi")], CompletionParams(max_tokens=8, temperature=0.0)
                )
                scope.cancel()
                await anyio.sleep_forever()

            await session.run(work)

    anyio.run(main)
    assert backend.closed
    assert _rows(db_path, "SELECT status FROM runs") == [("interrupted",)]
    stats = _rows(
        db_path, f"SELECT roles, requests FROM gateway_stats WHERE run_id = '{session.run_id}'"
    )
    assert stats == [(["user_sim", "assistant"], 1)]
