"""One conversation: two actors wired together, resumed from whatever turns are stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rapport.agents.actors import Assistant, UserSimulator, Utterance
from rapport.config.domain import Domain
from rapport.config.exception_groups import first_leaf
from rapport.config.run import Backends
from rapport.config.scenario import Scenario
from rapport.engine.budget import BudgetReached
from rapport.engine.errors import ProviderUnusable, TurnFailed
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress
from rapport.engine.types import ChatMessage, Completion, Role
from rapport.store.plans import UnfinishedConversation
from rapport.store.reads import Turn
from rapport.store.rows import ConversationUpdate, ErrorRow, StoreEvent, utc_now

Transcript = list[Turn]  # in turn order, roles `user` / `assistant`
# Handed each conversation this run completes (e.g. to a judge pool), once its slot is free.
AfterComplete = Callable[[Scenario, Transcript], Awaitable[None]]


class ConversationContext(msgspec.Struct, frozen=True):
    """What every conversation of a run shares."""

    domain: Domain
    run_id: str
    gateways: dict[str, Gateway]
    backends: Backends
    sink: ObjectSendStream[StoreEvent]
    progress: RunProgress
    assistant_system: str  # rendered once per run
    after_complete: AfterComplete | None = None  # e.g. judging, as conversations complete
    cache: bool = True  # the run config's `cache`: actors ask providers to reuse prefixes


# The user simulator speaks as `assistant` in its own view, and hears the assistant as `user`.
_seen_by_user: dict[str, Role] = {"user": "assistant", "assistant": "user"}


def _end_reason(message: Turn, target: int) -> str:
    return "target_reached" if message.turn_index // 2 + 1 >= target else "goodbye"


async def run_conversation(job: UnfinishedConversation, context: ConversationContext) -> None:
    """Play a conversation to its end; a failed turn records the conversation as failed.
    What happens after it completes (judging) is no part of it: its errors are not its."""
    scenario = job.scenario
    cid = scenario.scenario_id
    stored = job.messages
    progress = context.progress
    progress.active += 1
    transcript: Transcript | None = None
    try:
        await context.sink.send(
            StoreEvent(update=ConversationUpdate(cid, "running", context.run_id, utc_now()))
        )
        last = stored[-1] if stored else None
        if (
            last is not None
            and last.role == "assistant"
            and (last.final or len(stored) // 2 >= scenario.target_turns)
        ):
            # Played to its end before a kill, not yet marked: complete (and judged) now.
            await _mark_complete(
                context, cid, len(stored), _end_reason(last, scenario.target_turns)
            )
            transcript = list(stored)
        else:
            pending = last if last is not None and last.role == "user" else None
            history = await _play(job, context, pending=pending)
            # Turns only for whoever takes the completed conversation (judging): none otherwise.
            transcript = _turns(history) if context.after_complete is not None else []
        progress.done += 1
    except* Exception as group:
        stop = group.subgroup(ProviderUnusable)
        if group.subgroup(BudgetReached) is not None:
            # The budget refused this conversation's next call: it stops where it is, all it
            # said stored, and resumes next run (the run ends once calls in flight are done).
            pass
        elif stop is not None:
            # The provider is down or refuses every call: the run stops, and this conversation
            # resumes next time. Its partner actor's error (a closed stream) is no failure.
            raise stop from None
        else:  # a failed turn, or a bug: recorded, and the run goes on
            await _mark_failed(context, cid, _first_cause(group))
            progress.failed += 1
    finally:
        progress.active -= 1
    if transcript is not None and context.after_complete is not None:
        await context.after_complete(scenario, transcript)


async def _play(
    job: UnfinishedConversation, context: ConversationContext, pending: Turn | None
) -> list[ChatMessage]:
    """Play to the end; returns the whole transcript (the assistant's view is the true one)."""
    scenario = job.scenario
    answered = job.messages[:-1] if pending is not None else job.messages

    def on_turn(completion: Completion) -> None:
        context.progress.record_turn(
            completion.prompt_tokens + completion.completion_tokens, completion.truncated
        )

    common = {
        "domain": context.domain,
        "scenario": scenario,
        "run_id": context.run_id,
        "sink": context.sink,
        "on_turn": on_turn,
        "cache": context.cache,
    }
    user = UserSimulator(
        gateway=context.gateways["user_sim"],
        settings=context.backends.user_sim,
        history=[ChatMessage(_seen_by_user[m.role], m.content) for m in job.messages],
        **common,
    )
    assistant = Assistant(
        gateway=context.gateways["assistant"],
        settings=context.backends.assistant,
        history=[ChatMessage(m.role, m.content) for m in answered],  # type: ignore[arg-type]
        **common,
    )
    # Not `create_memory_object_stream[Utterance]`: subscripting builds a new generic alias
    # object on every call, and this runs for every conversation.
    to_assistant: MemoryObjectSendStream[Utterance]
    to_user: MemoryObjectSendStream[Utterance]
    assistant_inbox: MemoryObjectReceiveStream[Utterance]
    user_inbox: MemoryObjectReceiveStream[Utterance]
    to_assistant, assistant_inbox = anyio.create_memory_object_stream(1)
    to_user, user_inbox = anyio.create_memory_object_stream(1)
    # The actors take turns, so one task plays both: each turn is read from the speaker's
    # inbox, where the other actor's last turn always waits. A second task per conversation
    # would cost ~7 KB while it waits, most of an active conversation's memory.
    with to_assistant, assistant_inbox, to_user, user_inbox:
        if pending is not None:
            exchange = pending.turn_index // 2 + 1
            reason = _end_reason(pending, scenario.target_turns) if pending.final else None
            to_assistant.send_nowait(
                Utterance(pending.turn_index, exchange, pending.content, pending.final, reason)
            )
        elif not await user.begin(to_assistant, len(job.messages)):
            return assistant.history
        while True:
            await assistant.answer(
                assistant_inbox.receive_nowait(), to_user, context.assistant_system
            )
            if not await user.hear(user_inbox.receive_nowait(), to_assistant):
                break
    return assistant.history


def _turns(history: list[ChatMessage]) -> Transcript:
    """The played conversation as the stored turns read back (in turn order, 1-based exchanges)."""
    return [
        Turn(message.role, message.content, index, index // 2 + 1)
        for index, message in enumerate(history)
    ]


async def _mark_complete(
    context: ConversationContext, cid: str, messages: int, reason: str
) -> None:
    update = ConversationUpdate(
        cid, "complete", context.run_id, utc_now(), end_reason=reason, num_messages=messages
    )
    await context.sink.send(StoreEvent(update=update))


def _first_cause(group: BaseExceptionGroup) -> BaseException:
    """The failure to record: a failed turn if there is one, else the first error."""
    failed_turns = group.subgroup(TurnFailed)
    return first_leaf(failed_turns if failed_turns is not None else group)


async def _mark_failed(context: ConversationContext, cid: str, error: BaseException) -> None:
    kind = error.kind if isinstance(error, TurnFailed) else f"internal:{type(error).__name__}"
    message = str(error) or type(error).__name__
    turn_index = error.turn_index if isinstance(error, TurnFailed) else None
    role = error.role if isinstance(error, TurnFailed) else None
    at = utc_now()
    await context.sink.send(
        StoreEvent(
            update=ConversationUpdate(
                cid, "failed", context.run_id, at, end_reason="error", error=message
            ),
            error=ErrorRow(context.run_id, cid, turn_index, role, kind, message, at),
        )
    )
