"""How conversations end: target length, the user's goodbye, or a recorded failure."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import duckdb
import msgspec

from rapport.engine.errors import BackendError
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from rapport.stages.generate import GenerateRequest, generate, prepare, simulate, store_plan


class ScriptedBackend:
    """Says goodbye (with the domain's marker) at exchange 2 of every third conversation, and
    fails for good on conversations whose index ends in 7."""

    provider = "scripted"
    model = "script"

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        hints = params.hints
        assert hints is not None
        index = hints.scenario.index
        if index % 10 == 7 and hints.exchange == 2:
            raise BackendError("http_400", "bad request for this one", retryable=False)
        text = f"{hints.speaker} turn {hints.exchange}"
        if hints.speaker == "user_sim" and index % 3 == 0 and hints.exchange == 2:
            text += " see you [END]"
        return Completion(text, 1, 1, 0.0, self.model, self.provider, "stop")

    async def aclose(self) -> None:
        return None


def _run(db_path, count: int = 20):
    generation = prepare(GenerateRequest(db=db_path, backend="simulated", count=count, turns=4))
    gateway = Gateway(ScriptedBackend())
    generation = msgspec.structs.replace(
        generation, gateways={"user_sim": gateway, "assistant": gateway}
    )
    store_plan(generation)
    return anyio.run(simulate, generation, RunProgress(total=count))


def test_goodbye_ends_early_and_failures_are_recorded(db_path):
    summary = _run(db_path)
    assert summary.failed == 2 and summary.complete == 18  # indices 7 and 17 failed
    with duckdb.connect(str(db_path), read_only=True) as conn:
        goodbyes = conn.execute(
            "SELECT scenario_index, num_messages FROM conversations WHERE end_reason = 'goodbye' ORDER BY 1"
        ).fetchall()
        assert goodbyes == [(i, 4) for i in (0, 3, 6, 9, 12, 15, 18)]
        last_user = conn.execute(
            "SELECT content, final FROM messages m JOIN conversations c USING (conversation_id) "
            "WHERE c.scenario_index = 3 AND turn_index = 2"
        ).fetchone()
        assert last_user == ("user_sim turn 2 see you", True)
        failed = conn.execute(
            "SELECT c.scenario_index, e.kind FROM errors e JOIN conversations c USING (conversation_id) ORDER BY 1"
        ).fetchall()
        assert failed == [(7, "http_400"), (17, "http_400")]
        kept = conn.execute(
            "SELECT count(*) FROM messages m JOIN conversations c USING (conversation_id) WHERE c.scenario_index = 7"
        ).fetchone()
        assert kept == (2,)  # the turns before the failure stay stored


def test_failed_conversations_are_retried_by_the_next_run(db_path):
    _run(db_path)
    summary = generate(
        GenerateRequest(db=db_path, backend="simulated", count=20, turns=4)
    )  # simulated: no failures
    assert summary.failed == 0 and summary.complete == 20
    with duckdb.connect(str(db_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT count(*), min(turn_index), max(turn_index) FROM messages m "
            "JOIN conversations c USING (conversation_id) WHERE c.scenario_index = 7"
        ).fetchone()
        assert rows == (8, 0, 7)
        first_turns = conn.execute(
            "SELECT content FROM messages m JOIN conversations c USING (conversation_id) "
            "WHERE c.scenario_index = 7 AND turn_index < 2 ORDER BY turn_index"
        ).fetchall()
        assert first_turns == [("user_sim turn 1",), ("assistant turn 1",)]  # never rewritten
