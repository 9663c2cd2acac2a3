"""The simulated backend: an offline stand-in for an LLM that samples like one (seeded when
asked, greedy at temperature 0, otherwise different on every call)."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

import anyio
import anyio.lowlevel

from rapport.config.constants import SIMULATED_USER_REDRAWS
from rapport.engine.backend import usage_or_estimate
from rapport.engine.backends.simulated_faults import UserFaults, write_fault_turn
from rapport.engine.backends.simulated_judge import write_verdicts
from rapport.engine.backends.simulated_text import write_assistant_turn, write_user_turn
from rapport.engine.errors import BackendError
from rapport.engine.seeding import derive_seed
from rapport.engine.text_overlap import repeated_turn
from rapport.engine.types import ChatMessage, Completion, CompletionParams, SimulationHints

SIMULATED_MODEL = "rapport-simulator"


class SimulatedBackend:
    """Writes turns from the scenario and domain in the call's hints (so it is built without a
    domain), sampling the way a provider that honours seeds does: the same sampling seed
    (`params.seed`) gives the same text and another seed other text; without a seed,
    temperature 0 is greedy (the call alone decides, as a judge's does) and any other
    temperature draws afresh from this instance's own randomness.

    `quality` is, as the assistant, the share of real replies (the rest are generic lapses) and,
    as a judge, the base share of YES verdicts (lowered by lapses it reads in the transcript);
    `topic_quality` sets that base per first-topic category, so yields differ by topic.
    The model name seeds the draws too: two differently named simulators are two "models".
    Labelled as a simulator wherever it shows: provider `simulated`, model `rapport-simulator`.

    `faults`, as the user simulator, plants turns that break character (simulated_faults): a
    share of turns copying the assistant, disclosing an AI, coaching, repeating or rambling,
    and a share of conversations whose user ignores its flaws; none by default.
    """

    provider = "simulated"

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        model: str = "",
        quality: float = 0.85,
        faults: UserFaults | None = None,
        topic_quality: Mapping[str, float] | None = None,
    ) -> None:
        self.model = model or SIMULATED_MODEL
        self._latency_s = latency_ms / 1000.0
        self._quality = quality
        self._faults = faults or UserFaults()
        self._topic_quality = dict(topic_quality or {})
        self._unseeded = random.Random()  # seeded from the OS: unseeded calls differ per run

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        hints = params.hints
        if hints is None:
            raise BackendError("bad_request", "the simulated backend needs hints", retryable=False)
        started = time.perf_counter()
        if self._latency_s:
            await anyio.sleep(self._latency_s)
        else:
            await anyio.lowlevel.checkpoint()
        seed = self._draw_seed(params, hints)
        rng = random.Random(seed)
        if hints.speaker == "judge":
            prompt = "\n".join(m.content for m in messages)
            text = write_verdicts(
                hints.domain, hints.scenario, hints.criteria, self._judge_quality(hints), rng,
                prompt, hints.side,
            )  # fmt: skip
        elif hints.speaker == "user_sim":
            text = self._user_turn(messages, hints, seed, rng)
        else:
            last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
            text = write_assistant_turn(
                hints.domain, hints.scenario, last_user, hints.final, rng, self._quality
            )
        return simulated_completion(text, messages, started, self.model, self.provider)

    def _user_turn(
        self,
        messages: Sequence[ChatMessage],
        hints: SimulationHints,
        seed: int,
        rng: random.Random,
    ) -> str:
        """A user turn: in character, or (on request) one of the planted faults."""
        faults = self._faults
        if faults.any_turn_fault:
            fault = faults.draw(seed)
            if fault is not None:
                text = write_fault_turn(
                    fault, hints.domain, hints.scenario, messages, hints.final, rng
                )
                if text is not None:
                    return text
        show_flaws = not faults.ignores_flaws(hints.scenario, self.model)
        said = [m.content for m in messages if m.role == "assistant"]  # its own earlier turns
        for _ in range(SIMULATED_USER_REDRAWS):
            # In character, a user does not send one of its messages again: drawn anew if so.
            text = write_user_turn(
                hints.domain, hints.scenario, hints.exchange, hints.final, rng, show_flaws
            )
            if repeated_turn(text, said) is None:
                break
        return text

    def _judge_quality(self, hints: SimulationHints) -> float:
        topics = hints.scenario.topics
        if not topics:
            return self._quality
        return self._topic_quality.get(topics[0].category, self._quality)

    def _draw_seed(self, params: CompletionParams, hints: SimulationHints) -> int:
        """Where this call's draws come from. With a sampling seed, that seed (never the
        scenario's own: a caller that drops or varies the seed must see different text)."""
        call = (hints.exchange, hints.speaker, self.model, *hints.criteria)
        if params.seed is not None:
            return derive_seed("sampling", params.seed, *call)
        if params.temperature == 0:
            return derive_seed(hints.scenario.seed, *call)
        return self._unseeded.getrandbits(63)

    async def aclose(self) -> None:
        return None


def simulated_completion(
    text: str, messages: Sequence[ChatMessage], started: float, model: str, provider: str
) -> Completion:
    """A Completion for offline-written text, with token counts estimated from characters."""
    prompt_tokens, completion_tokens = usage_or_estimate(
        sum(len(m.content) for m in messages), text
    )
    return Completion(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_s=time.perf_counter() - started,
        model=model,
        provider=provider,
        finish_reason="stop",
    )
