"""Resume hands each actor the stored conversation: the first prompt after a resume holds every
stored turn, in order, in that actor's own view (its turns as `assistant`, the other's as
`user`, its system prompt first). The simulated backend ignores the history, so here a backend
records every message list it is sent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import duckdb
import msgspec
import pytest

from rapport.agents.prompts import assistant_prompt, instruction_message, user_simulator_prompt
from rapport.config.domain import Domain
from rapport.config.scenario import Scenario
from rapport.engine.errors import BackendError
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress
from rapport.engine.types import ChatMessage, Completion, CompletionParams, Speaker
from rapport.stages.generate import GenerateRequest, prepare, simulate, store_plan
from tests.conftest import TINY_DOMAIN

TURNS = 3
AFTER_USER_TURN = 0  # scenario index whose assistant fails at exchange 2: stored u1 a1 u2
AFTER_ASSISTANT_TURN = 1  # scenario index whose user fails at exchange 2: stored u1 a1


class Call(msgspec.Struct, frozen=True):
    speaker: Speaker
    scenario: Scenario
    exchange: int
    messages: tuple[ChatMessage, ...]


class RecordingBackend:
    """Replies `<prefix> <speaker> <index>.<exchange>`, records every prompt it is sent, and
    fails for good on the (scenario index, speaker, exchange) listed in `failing`."""

    provider = "recording"
    model = "recorder"

    def __init__(self, prefix: str, failing: frozenset[tuple[int, str, int]] = frozenset()):
        self.prefix = prefix
        self.failing = failing
        self.calls: list[Call] = []

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        hints = params.hints
        assert hints is not None
        index = hints.scenario.index
        self.calls.append(Call(hints.speaker, hints.scenario, hints.exchange, tuple(messages)))
        if (index, hints.speaker, hints.exchange) in self.failing:
            raise BackendError("http_400", "refused by the test", retryable=False)
        text = f"{self.prefix} {hints.speaker} {index}.{hints.exchange}"
        return Completion(text, 1, 1, 0.0, self.model, self.provider, "stop")

    async def aclose(self) -> None:
        return None

    def first_call(self, index: int, speaker: Speaker) -> Call:
        return next(c for c in self.calls if c.scenario.index == index and c.speaker == speaker)


class Resumed(msgspec.Struct, frozen=True):
    stored: dict[int, list[tuple[str, str]]]  # scenario index -> (role, content) before resume
    final: dict[int, list[tuple[str, str]]]  # ... after the resumed run
    backend: RecordingBackend
    domain: Domain


def _run(db: Path, backend: RecordingBackend):
    request = GenerateRequest(db=db, backend="simulated", count=2, turns=TURNS, domain=TINY_DOMAIN)
    generation = prepare(request)
    gateway = Gateway(backend)
    generation = msgspec.structs.replace(
        generation, gateways={"user_sim": gateway, "assistant": gateway}
    )
    store_plan(generation)
    anyio.run(simulate, generation, RunProgress(total=2))
    return generation


def _messages(db: Path) -> dict[int, list[tuple[str, str]]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT c.scenario_index, m.role, m.content FROM messages m "
            "JOIN conversations c USING (conversation_id) ORDER BY 1, m.turn_index"
        ).fetchall()
    turns: dict[int, list[tuple[str, str]]] = {}
    for index, role, content in rows:
        turns.setdefault(index, []).append((role, content))
    return turns


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Resumed:
    """Part of two conversations stored by a run whose turns failed, then the same plan run
    again (failed conversations are resumed) through the real writer and DuckDB file."""
    db = tmp_path_factory.mktemp("resume") / "rapport.duckdb"
    failing = frozenset({(AFTER_USER_TURN, "assistant", 2), (AFTER_ASSISTANT_TURN, "user_sim", 2)})
    _run(db, RecordingBackend("stored", failing))
    stored = _messages(db)
    backend = RecordingBackend("resumed")
    generation = _run(db, backend)
    return Resumed(stored, _messages(db), backend, generation.domain)


def _as_user_simulator_sees(turns: list[tuple[str, str]]) -> list[ChatMessage]:
    swap = {"user": "assistant", "assistant": "user"}
    return [ChatMessage(swap[role], content) for role, content in turns]  # type: ignore[arg-type]


def _as_assistant_sees(turns: list[tuple[str, str]]) -> list[ChatMessage]:
    return [ChatMessage(role, content) for role, content in turns]  # type: ignore[arg-type]


def _user_simulator_sees(
    resumed: Resumed, call: Call, turns: list[ChatMessage]
) -> list[ChatMessage]:
    """Its prompt: the persona as the system message (the same on every turn), then each
    exchange's instruction as a user message before the turn it asked for, this exchange's last."""
    domain, scenario = resumed.domain, call.scenario
    expected = [ChatMessage("system", user_simulator_prompt(domain, scenario))]
    for exchange in range(1, call.exchange):
        expected.append(instruction_message(domain, exchange, TURNS, False))
        expected += turns[2 * exchange - 2 : 2 * exchange]
    final = call.exchange == TURNS
    expected.append(instruction_message(domain, call.exchange, TURNS, final))
    assert len(turns) == 2 * (call.exchange - 1)
    return expected


def test_the_first_run_stored_part_of_each_conversation(resumed):
    """The starting point the other tests rely on: one ends on a user turn, one on a reply."""
    assert resumed.stored[AFTER_USER_TURN] == [
        ("user", "stored user_sim 0.1"),
        ("assistant", "stored assistant 0.1"),
        ("user", "stored user_sim 0.2"),
    ]
    assert resumed.stored[AFTER_ASSISTANT_TURN] == [
        ("user", "stored user_sim 1.1"),
        ("assistant", "stored assistant 1.1"),
    ]


def test_resumed_conversations_keep_their_stored_turns_and_complete(resumed):
    for index in (AFTER_USER_TURN, AFTER_ASSISTANT_TURN):
        stored, final = resumed.stored[index], resumed.final[index]
        assert final[: len(stored)] == stored
        assert len(final) == 2 * TURNS
        assert all(content.startswith("resumed ") for _, content in final[len(stored) :])


def test_after_a_user_turn_the_assistant_first_answers_with_every_stored_turn(resumed):
    stored = resumed.stored[AFTER_USER_TURN]
    call = resumed.backend.first_call(AFTER_USER_TURN, "assistant")
    assert call.exchange == 2
    assert list(call.messages) == [
        ChatMessage("system", assistant_prompt(resumed.domain)),
        *_as_assistant_sees(stored),
    ]


def test_after_a_user_turn_the_user_simulator_first_speaks_with_every_stored_turn(resumed):
    stored = resumed.stored[AFTER_USER_TURN]
    call = resumed.backend.first_call(AFTER_USER_TURN, "user_sim")
    assert call.exchange == 3
    turns = [
        *_as_user_simulator_sees(stored),
        ChatMessage("user", "resumed assistant 0.2"),  # the reply to the stored user turn
    ]
    assert list(call.messages) == _user_simulator_sees(resumed, call, turns)


def test_after_an_assistant_turn_the_user_simulator_first_speaks_with_every_stored_turn(resumed):
    stored = resumed.stored[AFTER_ASSISTANT_TURN]
    call = resumed.backend.first_call(AFTER_ASSISTANT_TURN, "user_sim")
    assert call.exchange == 2
    assert list(call.messages) == _user_simulator_sees(
        resumed, call, _as_user_simulator_sees(stored)
    )


def test_after_an_assistant_turn_the_assistant_first_answers_with_every_stored_turn(resumed):
    stored = resumed.stored[AFTER_ASSISTANT_TURN]
    call = resumed.backend.first_call(AFTER_ASSISTANT_TURN, "assistant")
    assert call.exchange == 2
    assert list(call.messages) == [
        ChatMessage("system", assistant_prompt(resumed.domain)),
        *_as_assistant_sees(stored),
        ChatMessage("user", "resumed user_sim 1.2"),  # the user turn it answers
    ]
