"""The simulated backend samples like a provider that honours seeds: the sampling seed decides
the text, never the scenario alone (so a caller that drops or varies its seeds is caught)."""

from __future__ import annotations

import anyio
import pytest

from rapport.config.domain import Domain
from rapport.engine.backends.simulated import SimulatedBackend
from rapport.engine.plan import plan_id_for, sample_scenario
from rapport.engine.types import ChatMessage, CompletionParams, SimulationHints, Speaker

CALLS = 8


def _params(domain: Domain, speaker: Speaker, seed: int | None, temperature: float = 0.8):
    scenario = sample_scenario(domain, plan_id_for(domain, 0, 3), 0, 0, 3)
    hints = SimulationHints(speaker, scenario, domain, 1, 3, False)
    return CompletionParams(max_tokens=200, temperature=temperature, seed=seed, hints=hints)


def _replies(backend: SimulatedBackend, params: list[CompletionParams]) -> list[str]:
    messages = [ChatMessage("system", "Play the user."), ChatMessage("user", "Begin.")]

    async def go() -> list[str]:
        return [(await backend.complete(messages, p)).text for p in params]

    return anyio.run(go)


@pytest.mark.parametrize("speaker", ["user_sim", "assistant"])
def test_the_same_sampling_seed_gives_the_same_reply(therapy, speaker):
    params = _params(therapy, speaker, seed=1234)
    first = _replies(SimulatedBackend(), [params] * CALLS)
    other_instance = _replies(SimulatedBackend(), [params])
    assert set(first) == set(other_instance) and len(set(first)) == 1


@pytest.mark.parametrize("speaker", ["user_sim", "assistant"])
def test_different_sampling_seeds_give_different_replies(therapy, speaker):
    replies = _replies(
        SimulatedBackend(), [_params(therapy, speaker, seed) for seed in range(CALLS)]
    )
    assert len(set(replies)) > 1


@pytest.mark.parametrize("speaker", ["user_sim", "assistant"])
def test_without_a_seed_each_call_draws_afresh(therapy, speaker):
    params = _params(therapy, speaker, seed=None)
    one_backend = _replies(SimulatedBackend(), [params] * CALLS)
    fresh_backends = [_replies(SimulatedBackend(), [params])[0] for _ in range(CALLS)]
    assert len(set(one_backend)) > 1
    assert len(set(fresh_backends)) > 1


def test_without_a_seed_temperature_zero_is_greedy(therapy):
    """A judge asks at temperature 0 without a seed: its verdicts depend on the call alone."""
    scenario = _params(therapy, "judge", seed=None).hints.scenario
    criteria = tuple(c.id for c in therapy.rubric.criteria)
    hints = SimulationHints("judge", scenario, therapy, 3, 3, True, criteria)
    params = CompletionParams(max_tokens=2000, temperature=0.0, hints=hints)
    replies = _replies(SimulatedBackend(), [params] * 3)
    replies += _replies(SimulatedBackend(), [params])
    assert len(set(replies)) == 1
