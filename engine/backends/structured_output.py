"""Structured output negotiated with an OpenAI-compatible server: the strongest mode it accepts,
found by stepping down once per rejection, remembered for the run (one ladder per backend, and
so per gateway). Servers differ: OpenAI and vLLM take `json_schema`, llama-cpp-python's server
only `json_object` with a `schema`, and some servers take neither."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

from rapport.engine.types import ChatMessage

StructuredMode = Literal["json_schema", "json_object", "instruction"]
MODES: tuple[StructuredMode, ...] = ("json_schema", "json_object", "instruction")


def response_format(mode: StructuredMode, schema: Mapping[str, object]) -> dict[str, object] | None:
    """The `response_format` field for `mode`; None for a plain instruction (no field at all)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": dict(schema), "strict": False},
        }
    if mode == "json_object":  # how llama.cpp servers take a schema (they build a grammar)
        return {"type": "json_object", "schema": dict(schema)}
    return None


def json_instruction(schema: Mapping[str, object]) -> str:
    """With no structured mode left, the prompt itself has to ask for bare JSON."""
    return (
        "Reply with a single JSON value and nothing else (no prose, no code fences), "
        f"matching this JSON schema: {json.dumps(schema, separators=(',', ':'))}"
    )


def with_instruction(
    messages: Sequence[ChatMessage], schema: Mapping[str, object]
) -> list[ChatMessage]:
    """The messages with the JSON instruction added to the system message (or as one)."""
    instruction = json_instruction(schema)
    if messages and messages[0].role == "system":
        first = ChatMessage("system", f"{messages[0].content}\n\n{instruction}")
        return [first, *messages[1:]]
    return [ChatMessage("system", instruction), *messages]


def names_response_format(error_text: str) -> bool:
    """A rejection of the structured-output field itself (whatever the status code)."""
    return "response_format" in error_text.lower()


class StructuredOutputLadder:
    """The mode to ask for now; steps down one rung per rejection of the mode in use."""

    def __init__(self) -> None:
        self._rung = 0

    @property
    def mode(self) -> StructuredMode:
        return MODES[self._rung]

    def step_down(self, rejected: StructuredMode) -> bool:
        """After `rejected` was refused: True when a weaker mode is left to try. Requests in
        flight with the same mode step down once between them, not once each."""
        rung = MODES.index(rejected)
        if rung + 1 >= len(MODES):
            return False
        self._rung = max(self._rung, rung + 1)
        return True
