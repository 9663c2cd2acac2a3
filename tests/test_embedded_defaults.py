"""The embedded SmolLM2's defaults end turns where a person would (issue 23 §5): a reply's
budget follows the words the turn may use (the persona's word limit for the user simulator,
twice the user's message for the coach) instead of one fixed cap it rambles up to, near that
budget the end of the turn is nudged at sentence ends, and replies stop at the chat template's
turn markers. Hosted models keep their fixed default."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import numpy as np
import pytest

from rapport.agents.actors import Assistant, UserSimulator, Utterance
from rapport.config import constants
from rapport.config.backend_settings import LlamaCppConfig
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.run import load_run_config
from rapport.engine.backends.llamacpp_backend import EndOfTurnNudge
from rapport.engine.gateway import Gateway, GatewayLimits
from rapport.engine.plan import sample_scenario
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from rapport.store.rows import StoreEvent


class _Recording:
    """A backend that answers at once with a fixed reply and keeps each call's parameters."""

    provider = "llamacpp"
    model = "recording"
    simulated = False

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.params: list[CompletionParams] = []

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        self.params.append(params)
        return Completion(
            text=self.reply,
            prompt_tokens=10,
            completion_tokens=len(self.reply.split()),
            latency_s=0.001,
            model=self.model,
            provider=self.provider,
            finish_reason="stop",
        )

    async def aclose(self) -> None:
        return None


def test_the_embedded_model_stops_at_chatmls_turn_markers(tmp_path):
    assert LlamaCppConfig().stop == ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
    assert parse_backend_spec("llamacpp").stop == constants.LLAMACPP_STOP  # type: ignore[union-attr]
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("backends:\n  assistant:\n    stop: ['###']\n")  # another template's
    assert load_run_config(run_yaml).backends.assistant.stop == ("###",)  # type: ignore[union-attr]


@pytest.mark.parametrize("words", [40, 80, 100, 150, 180, 280, 300])
def test_a_turns_budget_is_near_its_word_limit(words: int):
    budget = LlamaCppConfig().reply_budget(words)
    assert words * 1.3 <= budget <= words * 2  # room for the words, not for a ramble
    assert budget == -(-words * 7 * 5 // 20)  # 1.4 tokens a word, a quarter more


def test_a_short_turn_still_gets_room_for_a_sentence_or_two():
    assert LlamaCppConfig().reply_budget(3) == LlamaCppConfig().reply_budget(40) == 70


def test_a_configured_max_tokens_wins_and_hosted_models_keep_their_default():
    assert LlamaCppConfig(max_tokens=300).reply_budget(30) == 300
    assert LlamaCppConfig().reply_budget(None) == constants.DEFAULT_LOCAL_MAX_TOKENS
    assert parse_backend_spec("openai:m").reply_budget(30) == constants.DEFAULT_MAX_TOKENS


def _actors(therapy, reply: str) -> tuple[_Recording, UserSimulator, Assistant, object]:
    backend = _Recording(reply)
    gateway = Gateway(backend, GatewayLimits(max_in_flight=1))  # type: ignore[arg-type]
    send, receive = anyio.create_memory_object_stream[StoreEvent](100)
    scenario = sample_scenario(therapy, "p", 3, 0, 2)
    common = dict(
        domain=therapy,
        scenario=scenario,
        run_id="r",
        gateway=gateway,
        settings=LlamaCppConfig(),
        sink=send,
        on_turn=lambda _completion: None,
    )
    user = UserSimulator(history=[], **common)  # type: ignore[arg-type]
    coach = Assistant(history=[], **common)  # type: ignore[arg-type]
    return backend, user, coach, (send, receive)


def test_the_user_simulator_asks_for_its_personas_word_limit(therapy):
    backend, user, _coach, streams = _actors(therapy, "I have not slept well in days.")
    to_coach, from_user = anyio.create_memory_object_stream[Utterance](1)

    async def first_turn() -> None:
        async with to_coach, from_user, streams[0], streams[1]:
            assert await user.begin(to_coach, 0)

    anyio.run(first_turn)
    limit = user.scenario.persona.word_limit[1]
    assert [p.max_tokens for p in backend.params] == [LlamaCppConfig().reply_budget(limit)]


def _coach_budget(therapy, words: int) -> int:
    backend, _user, coach, streams = _actors(therapy, "That sounds hard.")
    to_user, from_coach = anyio.create_memory_object_stream[Utterance](1)
    message = " ".join(["word"] * words)

    async def one_reply() -> None:
        async with to_user, from_coach, streams[0], streams[1]:
            await coach.answer(Utterance(0, 1, message, False), to_user, "coach prompt")

    anyio.run(one_reply)
    [params] = backend.params
    return params.max_tokens


def test_the_coach_asks_for_twice_the_users_message(therapy):
    assert _coach_budget(therapy, 60) == LlamaCppConfig().reply_budget(120)


def test_a_rambling_message_does_not_earn_a_rambling_reply(therapy):
    limit = sample_scenario(therapy, "p", 3, 0, 2).persona.word_limit[1]
    assert _coach_budget(therapy, limit * 5) == LlamaCppConfig().reply_budget(2 * limit)


def _nudged(tokens: list[int], prompt: int = 3, start: int = 2) -> list[float]:
    """The end-of-turn logit (id 0) after each generated token; token 7 ends a sentence."""
    nudge = EndOfTurnNudge(0, start, 1.0, lambda t: b" done." if t == 7 else b" and")
    seen = []
    for n in range(len(tokens) + 1):
        scores = np.zeros(10, dtype=np.single)
        seen.append(float(nudge(np.array([1] * prompt + tokens[:n]), scores)[0]))
    return seen


def test_the_end_of_turn_is_nudged_only_at_a_sentence_end_past_the_start():
    # 2 tokens generated: from there, +4 at a sentence end, +1 more per token past the start
    assert _nudged([7, 7, 5, 7, 5, 7]) == [0, 0, 4.0, 0, 6.0, 0, 8.0]


def test_the_nudge_is_on_by_default_and_can_be_turned_off():
    assert LlamaCppConfig().end_nudge == constants.LOCAL_END_NUDGE_PER_TOKEN > 0
    assert LlamaCppConfig(end_nudge=0).end_nudge == 0
