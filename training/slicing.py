"""Slicing a conversation into training examples that end at chosen assistant turns, so the
model learns from short and long context alike."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import msgspec

from rapport.engine.seeding import derive_seed
from rapport.store.reads import Turn

Exchange = tuple[str, str]  # (user message, assistant reply)


class SlicingPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where examples end. `steps` (the seed's): from exchange `start`, random steps of
    `min_step`..`max_step`, seeded by the conversation id; `every`: every `every`-th exchange.
    Both always include the last exchange."""

    kind: Literal["steps", "every"] = "steps"
    start: int = 3
    min_step: int = 2
    max_step: int = 5
    every: int = 4


def slice_points(conversation_id: str, exchanges: int, policy: SlicingPolicy) -> list[int]:
    """1-based exchange numbers at which examples end (sorted, the last always included)."""
    if exchanges <= 0:
        return []
    points: set[int] = {exchanges}
    if policy.kind == "every":
        points |= set(range(policy.every, exchanges + 1, policy.every))
    else:
        rng = random.Random(derive_seed("slices", conversation_id))
        point = policy.start
        while point < exchanges:
            points.add(point)
            point += rng.randint(policy.min_step, policy.max_step)
    return sorted(points)


def pair_exchanges(messages: Sequence[Turn]) -> list[Exchange]:
    """(user, assistant) pairs from alternating messages; a trailing user message is dropped."""
    pairs = []
    for index in range(0, len(messages) - 1, 2):
        user, reply = messages[index], messages[index + 1]
        if user.role != "user" or reply.role != "assistant":
            raise ValueError(f"messages {index} and {index + 1} are not a user/assistant exchange")
        pairs.append((user.content, reply.content))
    return pairs


def to_messages(system_prompt: str, exchanges: Sequence[Exchange]) -> list[dict[str, str]]:
    """The OpenAI `messages` form: the trained model's system prompt, then the exchanges."""
    messages = [{"role": "system", "content": system_prompt}]
    for user, reply in exchanges:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": reply})
    return messages
