"""A conversation is played in one task: the two actors take turns, each reading the other's
last turn from its inbox stream. Checked here: the turns alternate as before (a resumed
conversation whose stored last turn was the user's goodbye gets one reply and ends), and while
every conversation waits for its provider, each holds one task (a second would cost ~7 KB,
most of an active conversation's memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio
import msgspec

from rapport.agents.conversation import ConversationContext, run_conversation
from rapport.agents.prompts import assistant_prompt
from rapport.config.loader import load_domain
from rapport.config.run import Backends
from rapport.engine.gateway import Gateway
from rapport.engine.plan import sample_scenarios
from rapport.engine.progress import RunProgress
from rapport.engine.types import ChatMessage, Completion, CompletionParams, Speaker
from rapport.store.plans import UnfinishedConversation
from rapport.store.reads import Turn
from rapport.store.rows import StoreEvent
from tests.conftest import TINY_DOMAIN


class GatedBackend:
    """Replies `<speaker> <exchange>` once `gate` is set, recording who was asked."""

    provider = "gated"
    model = "gate"

    def __init__(self, expected_waiting: int = 0) -> None:
        self.gate = anyio.Event()
        self.waiting = 0
        self.expected_waiting = expected_waiting
        self.all_waiting = anyio.Event()  # set once `expected_waiting` calls wait at once
        self.asked: list[tuple[Speaker, int]] = []

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        hints = params.hints
        assert hints is not None
        self.asked.append((hints.speaker, hints.exchange))
        self.waiting += 1
        if self.waiting == self.expected_waiting:
            self.all_waiting.set()
        await self.gate.wait()
        self.waiting -= 1
        return Completion(f"{hints.speaker} {hints.exchange}", 1, 1, 0.0, self.model, "gated")

    async def aclose(self) -> None:
        return None


def _context(backend: GatedBackend, sink) -> ConversationContext:
    domain = load_domain(TINY_DOMAIN)
    gateway = Gateway(backend)
    return ConversationContext(
        domain=domain,
        run_id="run-1",
        gateways={"user_sim": gateway, "assistant": gateway},
        backends=Backends(),
        sink=sink,
        progress=RunProgress(total=1),
        assistant_system=assistant_prompt(domain),
    )


def _scenarios(count: int, turns: int):
    domain = load_domain(TINY_DOMAIN)
    return list(sample_scenarios(domain, "plan-1", 7, 0, count, turns))


def _play(job: UnfinishedConversation, backend: GatedBackend) -> list[StoreEvent]:
    """Play one conversation to its end; what it sent the store, in order."""

    async def main() -> list[StoreEvent]:
        send, receive = anyio.create_memory_object_stream(100)
        async with send:
            await run_conversation(job, _context(backend, send))
        return [event async for event in receive]

    return anyio.run(main)


def test_a_resumed_goodbye_gets_one_reply_and_the_conversation_ends():
    [scenario] = _scenarios(1, turns=3)
    stored = (
        Turn("user", "hello", 0, 1),
        Turn("assistant", "hi", 1, 1),
        Turn("user", "thanks, bye", 2, 2, final=True),
    )
    job = UnfinishedConversation(scenario, "running", stored)
    backend = GatedBackend()
    backend.gate.set()
    events = _play(job, backend)
    assert backend.asked == [("assistant", 2)]
    messages = [e.message for e in events if e.message is not None]
    assert [(m.turn_index, m.role, m.content) for m in messages] == [
        (3, "assistant", "assistant 2")
    ]
    updates = [e.update for e in events if e.update is not None]
    assert [(u.status, u.end_reason, u.num_messages) for u in updates] == [
        ("running", None, None),
        ("complete", "goodbye", 4),
    ]


def test_turns_alternate_to_the_target_length():
    [scenario] = _scenarios(1, turns=3)
    job = UnfinishedConversation(scenario, "planned", ())
    backend = GatedBackend()
    backend.gate.set()
    events = _play(job, backend)
    assert backend.asked == [
        ("user_sim", 1), ("assistant", 1), ("user_sim", 2), ("assistant", 2),
        ("user_sim", 3), ("assistant", 3),
    ]  # fmt: skip
    messages = [e.message for e in events if e.message is not None]
    assert [m.turn_index for m in messages] == list(range(6))
    assert [m.final for m in messages] == [False] * 4 + [True] * 2
    complete = [e.update for e in events if e.update is not None and e.update.status == "complete"]
    assert [(u.end_reason, u.num_messages) for u in complete] == [("target_reached", 6)]


def test_each_waiting_conversation_holds_one_task():
    conversations = 50
    scenarios = _scenarios(conversations, turns=2)
    backend = GatedBackend(expected_waiting=conversations)

    async def main() -> tuple[int, int]:
        send, receive = anyio.create_memory_object_stream(10_000)
        context = _context(backend, send)
        async with send, receive, anyio.create_task_group() as group:
            before = len(asyncio.all_tasks())
            for scenario in scenarios:
                job = UnfinishedConversation(scenario, "planned", ())
                group.start_soon(run_conversation, job, context)
            await backend.all_waiting.wait()
            during = len(asyncio.all_tasks()) - before
            waiting = backend.waiting
            backend.gate.set()
        return during, waiting

    during, waiting = anyio.run(main)
    assert waiting == conversations  # every one of them is inside a provider call
    assert during == conversations


def test_a_failed_assistant_turn_fails_only_its_conversation():
    [scenario] = _scenarios(1, turns=2)

    class Refusing(GatedBackend):
        async def complete(self, messages, params):
            if params.hints is not None and params.hints.speaker == "assistant":
                from rapport.engine.errors import BackendError

                raise BackendError("http_400", "refused", retryable=False)
            return await super().complete(messages, params)

    backend = Refusing()
    backend.gate.set()
    events = _play(UnfinishedConversation(scenario, "planned", ()), backend)
    failed = [e for e in events if e.update is not None and e.update.status == "failed"]
    assert len(failed) == 1
    assert failed[0].error is not None and failed[0].error.role == "assistant"
    assert msgspec.structs.asdict(failed[0].error)["turn_index"] == 1
