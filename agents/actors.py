"""The user simulator and the assistant as actors: each keeps its own view of the history and
asks its gateway to speak; they talk to each other over anyio memory streams, taking turns
(agents.conversation drives both in the conversation's one task)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ClassVar, TypeVar

import anyio
import msgspec
from anyio.abc import ObjectSendStream

from rapport.agents.prompts import instruction_message, user_simulator_prompt
from rapport.config.constants import (
    COACH_REPLY_WORD_FACTOR,
    SAMPLING_SEED_RANGE,
    TRUNCATION_RETRY_FACTOR,
)
from rapport.config.domain import Domain
from rapport.config.run import BackendConfig
from rapport.config.scenario import Scenario
from rapport.engine.budget import BudgetReached
from rapport.engine.errors import TurnFailed
from rapport.engine.gateway import Gateway
from rapport.engine.seeding import derive_seed
from rapport.engine.types import ChatMessage, Completion, CompletionParams, SimulationHints, Speaker
from rapport.judges.simulator_checks import check_user_turn
from rapport.store.rows import (
    ConversationUpdate,
    MessageRow,
    SimulatorCheckRow,
    StoreEvent,
    utc_now,
)

T = TypeVar("T")


class Utterance(msgspec.Struct, frozen=True):
    """One turn, sent from one actor to the other."""

    turn_index: int
    exchange: int
    text: str
    final: bool
    end_reason: str | None = None


class Actor:
    """What both sides share: identity, a gateway, a history of their own, the store sink.
    Slotted: thousands wait at once, and a per-instance dict would be most of an actor."""

    __slots__ = (
        "cache",
        "domain",
        "gateway",
        "history",
        "on_turn",
        "run_id",
        "scenario",
        "settings",
        "sink",
    )
    speaker: ClassVar[Speaker]
    role: ClassVar[str]  # as stored in `messages`

    def __init__(
        self,
        *,
        domain: Domain,
        scenario: Scenario,
        run_id: str,
        gateway: Gateway,
        settings: BackendConfig,
        sink: ObjectSendStream[StoreEvent],
        history: list[ChatMessage],
        on_turn: Callable[[Completion], None],
        cache: bool = False,
    ) -> None:
        self.cache = cache  # ask the provider to reuse this actor's prompt prefix
        self.domain = domain
        self.scenario = scenario
        self.run_id = run_id
        self.gateway = gateway
        self.settings = settings
        self.sink = sink
        self.history = history
        self.on_turn = on_turn

    async def speak(
        self, messages: list[ChatMessage], exchange: int, final: bool, words: float
    ) -> Completion:
        """One turn of about `words` words at most (its budget: BackendConfig.reply_budget). A
        reply cut by the token budget is asked once more with a larger budget; if that one is
        cut too it is kept, its finish reason marking it (see `stats`)."""
        params = CompletionParams(
            max_tokens=self.settings.reply_budget(words),
            temperature=self.settings.temperature,
            # Fixed per (scenario, exchange, speaker): a provider that honours seeds samples the
            # same way for the same scenario, e.g. the user simulator facing two assistants.
            seed=derive_seed(self.scenario.seed, exchange, self.speaker) % SAMPLING_SEED_RANGE,
            hints=SimulationHints(
                speaker=self.speaker,
                scenario=self.scenario,
                domain=self.domain,
                exchange=exchange,
                target_exchanges=self.scenario.target_turns,
                final=final,
            ),
            # One key per conversation and role: each of its prompts extends the last one.
            cache_key=f"{self.scenario.scenario_id}:{self.role}" if self.cache else None,
        )
        turn_index = (exchange - 1) * 2 + (self.role == "assistant")
        try:
            completion = await self.gateway.complete(messages, params)
            if completion.truncated:
                larger = msgspec.structs.replace(
                    params, max_tokens=params.max_tokens * TRUNCATION_RETRY_FACTOR
                )
                with contextlib.suppress(BudgetReached):  # the cut reply is paid for: kept
                    completion = await self.gateway.complete(messages, larger)
        except TurnFailed as error:
            error.at_turn(turn_index, self.role)
            raise
        self.on_turn(completion)
        return completion

    def row(self, utterance: Utterance, role: str, completion: Completion) -> MessageRow:
        return MessageRow(
            conversation_id=self.scenario.scenario_id,
            turn_index=utterance.turn_index,
            role=role,
            content=utterance.text,
            exchange=utterance.exchange,
            final=utterance.final,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_ms=completion.latency_s * 1000.0,
            backend=completion.provider,
            model=completion.model,
            run_id=self.run_id,
            created_at=utc_now(),
            attempts=completion.attempts,
            finish_reason=completion.finish_reason,
            cache_read_tokens=completion.cache_read_tokens,
            cache_write_tokens=completion.cache_write_tokens,
            cost_usd=completion.cost_usd,
        )

    async def store(self, event: StoreEvent) -> None:
        """Hand a row to the writer (see `hand_over`)."""
        await hand_over(self.sink, event)

    def said(self, text: str) -> None:
        self.history.append(ChatMessage("assistant", text))

    def heard(self, text: str) -> None:
        self.history.append(ChatMessage("user", text))

    def view(self, system: str) -> list[ChatMessage]:
        """The history as this actor sees it: own turns as `assistant`, the other's as `user`
        (kept in that form as it grows, so a view is one list copy)."""
        return [ChatMessage("system", system), *self.history]


class UserSimulator(Actor):
    """Plays the user: its topics, flaws and style come from the scenario's persona."""

    __slots__ = ()
    speaker: ClassVar[Speaker] = "user_sim"
    role: ClassVar[str] = "user"

    async def begin(self, to_assistant: ObjectSendStream[Utterance], next_turn: int) -> bool:
        """The first message of this run (at `next_turn`); False when none is due."""
        return await self._next(to_assistant, next_turn)

    async def hear(self, reply: Utterance, to_assistant: ObjectSendStream[Utterance]) -> bool:
        """Take the assistant's reply and answer it; False when the conversation is over
        (the reply closed it, or the target length is reached)."""
        self.heard(reply.text)
        if reply.final:
            return False
        return await self._next(to_assistant, reply.turn_index + 1)

    async def _next(self, to_assistant: ObjectSendStream[Utterance], next_turn: int) -> bool:
        target = self.scenario.target_turns
        if next_turn // 2 >= target:
            return False
        exchange = next_turn // 2 + 1
        utterance = await self._compose(next_turn, exchange, exchange == target)
        await hand_over(to_assistant, utterance)
        return True

    async def _compose(self, turn_index: int, exchange: int, last: bool) -> Utterance:
        target = self.scenario.target_turns
        marker = self.domain.info.ending.marker
        completion = await self._ask(exchange, target, last)
        text, said_goodbye = _strip_marker(completion.text, marker)
        if said_goodbye and not text and not last:
            # Only the marker: ask once more, this time for a closing message.
            completion = await self._ask(exchange, target, True)
            text, _ = _strip_marker(completion.text, marker)
        if not text:
            raise TurnFailed(
                "empty_goodbye", "the user simulator ended with an empty message", 1
            ).at_turn(turn_index, self.role)
        final = last or said_goodbye
        reason = ("target_reached" if last else "goodbye") if final else None
        utterance = Utterance(turn_index, exchange, text, final, reason)
        row = self.row(utterance, "user", completion)
        checks = self.checks(row)
        self.said(text)
        await self.store(StoreEvent(message=row, checks=checks))
        return utterance

    def checks(self, row: MessageRow) -> tuple[SimulatorCheckRow, ...]:
        """The model-free checks that fire on this turn (before it joins the history), stored
        in the same event, so a turn and its checks are never apart (a resumed conversation's
        history is its stored turns: the checks read the same)."""
        history = self.history
        last = history[-1] if history else None
        hits = check_user_turn(
            row.content,
            previous_reply=last.content if last is not None and last.role == "user" else None,
            # own turns are `assistant` in this actor's view
            earlier_turns=(m.content for m in history if m.role == "assistant"),
            word_limit=self.scenario.persona.word_limit[1],
            phrases=self.domain.info.simulator_checks,
        )
        return tuple(
            SimulatorCheckRow(
                row.conversation_id, row.turn_index, hit.check_id, hit.evidence, row.created_at
            )
            for hit in hits
        )

    async def _ask(self, exchange: int, target: int, final: bool) -> Completion:
        words = self.scenario.persona.word_limit[1]  # the persona's limit, in its prompt
        return await self.speak(self.prompt(exchange, target, final), exchange, final, words)

    def prompt(self, exchange: int, target: int, final: bool) -> list[ChatMessage]:
        """The persona prompt as the system message, then each exchange's instruction as a
        user message before the turn it asked for, the one for this exchange last: the system
        message never changes and each prompt extends the previous one (a provider's prompt
        cache reuses all of it). Rendered per call rather than kept: between its turns a user
        simulator holds only its history (the instructions are shared, cached messages), which
        keeps thousands of waiting conversations small. It opens with the instruction to
        write the first message, so it starts with a user turn (as chat APIs expect)."""
        history = self.history
        messages = [ChatMessage("system", user_simulator_prompt(self.domain, self.scenario))]
        for earlier in range(1, exchange):
            messages.append(instruction_message(self.domain, earlier, target, earlier == target))
            messages += history[2 * earlier - 2 : 2 * earlier]
        messages.append(instruction_message(self.domain, exchange, target, final))
        return messages


class Assistant(Actor):
    """Plays the assistant: answers every user turn it receives."""

    __slots__ = ()
    speaker: ClassVar[Speaker] = "assistant"
    role: ClassVar[str] = "assistant"

    async def answer(
        self, utterance: Utterance, to_user: ObjectSendStream[Utterance], system: str
    ) -> None:
        """Answer one user turn; `system` is the run's assistant prompt (the same for all). The
        reply to a final turn completes the conversation, in the same store event."""
        self.heard(utterance.text)
        # the coach's limit: "never more than twice as long" as the person's message (as long
        # as the persona may write: a rambling message does not earn a rambling reply)
        said = min(len(utterance.text.split()), self.scenario.persona.word_limit[1])
        words = COACH_REPLY_WORD_FACTOR * said
        completion = await self.speak(self.view(system), utterance.exchange, utterance.final, words)
        reply = Utterance(
            utterance.turn_index + 1,
            utterance.exchange,
            completion.text,
            utterance.final,
            utterance.end_reason,
        )
        self.said(reply.text)
        row = self.row(reply, "assistant", completion)
        update = None
        if reply.final:
            update = ConversationUpdate(
                conversation_id=self.scenario.scenario_id,
                status="complete",
                run_id=self.run_id,
                at=row.created_at,
                end_reason=reply.end_reason,
                num_messages=reply.turn_index + 1,
            )
        await self.store(StoreEvent(message=row, update=update))
        await hand_over(to_user, reply)


async def hand_over(stream: ObjectSendStream[T], item: T) -> None:
    """Send at once when the other side waits or the buffer has room, with no trip through
    the event loop (anyio's `send` always makes one: two or three per turn); else wait for
    room (backpressure). A turn still yields where it waits for its reply. Any other
    ObjectSendStream (no `send_nowait`) just sends."""
    send_nowait = getattr(stream, "send_nowait", None)
    if send_nowait is not None:
        try:
            send_nowait(item)
            return
        except anyio.WouldBlock:
            pass
    await stream.send(item)


def _strip_marker(text: str, marker: str) -> tuple[str, bool]:
    if marker and marker in text:
        return text.replace(marker, "").strip(), True
    return text.strip(), False
