"""The null backend: the same fixed reply to every call, at once, with no text written and no
prompt read. Only for measuring the engine's own overhead (`--backend null`)."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.engine.backend import usage_or_estimate
from rapport.engine.types import ChatMessage, Completion, CompletionParams

NULL_MODEL = "fixed-reply"
NULL_REPLY = "ok"


class NullBackend:
    """Answers `reply` to everything: one prebuilt Completion (no prompt tokens: nothing is
    read), so a run measures the engine, streams and store and nothing else."""

    provider = "null"

    def __init__(self, *, reply: str = NULL_REPLY, model: str = "") -> None:
        self.model = model or NULL_MODEL
        self._completion = Completion(
            text=reply,
            prompt_tokens=0,  # nothing read
            completion_tokens=usage_or_estimate(0, reply)[1],
            latency_s=0.0,
            model=self.model,
            provider=self.provider,
            finish_reason="stop",
        )

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        return self._completion  # no await: nothing to wait for (the streams yield anyway)

    async def aclose(self) -> None:
        return None
