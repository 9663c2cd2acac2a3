"""Prompts are prefix-stable across a conversation, so a provider's prompt cache can reuse them:
each actor's system message never changes, and each of its prompts extends its previous prompt
(as message lists, and as the request bodies the openai and anthropic backends send through
their real SDKs). The per-exchange instruction comes last; a retry for a closing message after a
bare goodbye differs at its last message only."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import anyio
import msgspec
import pytest

from rapport.agents.prompts import assistant_prompt, instruction_message, user_simulator_prompt
from rapport.engine.backends.simulated import SimulatedBackend
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from rapport.stages.generate import GenerateRequest, generate, prepare, simulate, store_plan
from tests.conftest import TINY_DOMAIN
from tests.prompt_cache_server import cache_server, text_of

TURNS = 4
Stream = tuple[str, str]  # (conversation id, speaker)


class Recording:
    """Wraps the simulated backend; records every prompt and its params per actor stream."""

    provider = "simulated"

    def __init__(
        self, inner: SimulatedBackend, goodbye_only: frozenset[tuple[int, int]] = frozenset()
    ):
        self.inner = inner
        self.model = inner.model
        self.goodbye_only = set(goodbye_only)  # (scenario index, exchange): reply the marker only
        self.prompts: dict[Stream, list[tuple[ChatMessage, ...]]] = {}
        self.params: list[CompletionParams] = []

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        hints = params.hints
        assert hints is not None
        stream = (hints.scenario.scenario_id, hints.speaker)
        self.prompts.setdefault(stream, []).append(tuple(messages))
        self.params.append(params)
        at = (hints.scenario.index, hints.exchange)
        if hints.speaker == "user_sim" and at in self.goodbye_only:
            self.goodbye_only.discard(at)
            marker = hints.domain.info.ending.marker
            return Completion(marker, 1, 1, 0.0, self.model, self.provider, "stop")
        return await self.inner.complete(messages, params)

    async def aclose(self) -> None:
        return None


def _play(db: Path, backend_factory, count: int = 2, turns: int = TURNS):
    request = GenerateRequest(
        db=db, backend="simulated", count=count, turns=turns, domain=TINY_DOMAIN
    )
    generation = prepare(request)
    recording = backend_factory(generation.domain)
    gateway = Gateway(recording)
    generation = msgspec.structs.replace(
        generation, gateways={"user_sim": gateway, "assistant": gateway}
    )
    store_plan(generation)
    anyio.run(simulate, generation, RunProgress(total=count))
    return generation, recording


def _extends(earlier: Sequence[object], later: Sequence[object]) -> bool:
    return len(later) > len(earlier) and list(later[: len(earlier)]) == list(earlier)


def test_each_prompt_of_an_actor_extends_its_previous_prompt(tmp_path):
    generation, recording = _play(
        tmp_path / "r.duckdb", lambda domain: Recording(SimulatedBackend())
    )
    domain = generation.domain
    assert len(recording.prompts) == 4  # 2 conversations x 2 actors
    for (cid, speaker), prompts in recording.prompts.items():
        assert len(prompts) == TURNS, (cid, speaker)
        system = prompts[0][0]
        assert system.role == "system"
        for earlier, later in pairwise(prompts):
            assert later[0] == system  # the same system message on every turn
            assert _extends(earlier, later), (cid, speaker)
        if speaker == "assistant":
            assert system.content == assistant_prompt(domain)
        else:
            scenario = next(
                p.hints.scenario for p in recording.params if p.hints.scenario.scenario_id == cid
            )
            assert system.content == user_simulator_prompt(domain, scenario)  # persona alone
            for exchange, prompt in enumerate(prompts, start=1):
                final = exchange == TURNS
                instruction = instruction_message(domain, exchange, TURNS, final).content
                assert prompt[-1] == ChatMessage("user", instruction)  # this exchange's, last
                assert prompt[1] == instruction_message(domain, 1, TURNS, False)


def test_the_actors_send_a_cache_key_per_conversation_and_role(tmp_path):
    _, recording = _play(tmp_path / "r.duckdb", lambda domain: Recording(SimulatedBackend()))
    for params in recording.params:
        hints = params.hints
        role = "user" if hints.speaker == "user_sim" else "assistant"
        assert params.cache_key == f"{hints.scenario.scenario_id}:{role}"


def test_the_closing_retry_after_a_bare_goodbye_differs_at_its_last_message_only(tmp_path):
    generation, recording = _play(
        tmp_path / "r.duckdb",
        lambda domain: Recording(SimulatedBackend(), goodbye_only=frozenset({(0, 2)})),
        count=1,
    )
    domain = generation.domain
    ((cid, _),) = [stream for stream in recording.prompts if stream[1] == "user_sim"]
    first, second, retry = recording.prompts[(cid, "user_sim")][:3]
    assert _extends(first, second)
    assert retry[:-1] == second[:-1]
    assert second[-1] == instruction_message(domain, 2, TURNS, False)
    assert retry[-1] == instruction_message(domain, 2, TURNS, True)


def _strip_cache_control(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache_control(item) for item in value]
    return value


def _config(tmp_path: Path, cache: bool) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"cache: {'true' if cache else 'false'}\n", encoding="utf-8")
    return path


def _generate(tmp_path: Path, spec: str, cache: bool = True) -> None:
    request = GenerateRequest(
        db=tmp_path / "rapport.duckdb",
        count=2,
        turns=TURNS,
        backend=spec,
        domain=TINY_DOMAIN,
        config=_config(tmp_path, cache),
    )
    summary = generate(request, environ={})
    assert summary.complete == 2


def _by_stream(bodies: list[dict], key) -> dict[object, list[dict]]:
    streams: dict[object, list[dict]] = {}
    for body in bodies:
        streams.setdefault(key(body), []).append(body)
    return streams


def test_openai_request_bodies_extend_each_other_per_cache_key(tmp_path):
    with cache_server() as (url, state):
        _generate(tmp_path, f"openai:gpt-4o-mini@{url}/v1")
    streams = _by_stream(state.openai_bodies, lambda body: body["prompt_cache_key"])
    assert len(streams) == 4
    for key, bodies in streams.items():
        assert key.endswith((":user", ":assistant"))
        assert len(bodies) == TURNS
        for earlier, later in pairwise(bodies):
            assert _extends(earlier["messages"], later["messages"]), key


def test_anthropic_request_bodies_extend_each_other_with_breakpoints_moved(tmp_path):
    with cache_server() as (url, state):
        _generate(tmp_path, f"anthropic:claude-haiku-4-5@{url}")
    streams = _by_stream(
        state.anthropic_bodies,
        lambda body: (text_of(body["system"]), text_of(body["messages"][0]["content"])),
    )
    assert len(streams) == 4
    for key, bodies in streams.items():
        assert len(bodies) == TURNS
        for body in bodies:
            # Two breakpoints (the API allows four): the system prompt and the last block.
            assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
            assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
            assert repr(body).count("cache_control") == 2
        stripped = [_strip_cache_control(body) for body in bodies]
        for earlier, later in pairwise(stripped):
            assert later["system"] == earlier["system"]
            assert _extends(earlier["messages"], later["messages"]), key
            roles = [m["role"] for m in later["messages"]]
            assert roles[0] == "user"
            assert all(a != b for a, b in pairwise(roles))  # alternating


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_cache_false_sends_no_hints(tmp_path, api):
    with cache_server() as (url, state):
        spec = f"openai:gpt-4o-mini@{url}/v1" if api == "openai" else f"anthropic:claude-x@{url}"
        _generate(tmp_path, spec, cache=False)
    bodies = state.openai_bodies if api == "openai" else state.anthropic_bodies
    assert len(bodies) == 2 * 2 * TURNS
    for body in bodies:
        assert "prompt_cache_key" not in body
        assert "cache_control" not in repr(body)
        if api == "anthropic":
            assert isinstance(body["system"], str)
            assert all(isinstance(m["content"], str) for m in body["messages"])
