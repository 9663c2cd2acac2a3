"""What the per-turn shortcuts keep: prompts from pre-parsed templates are format_map's text
for every shipped domain, seeds are the blake2b of the joined parts, a turn handed over
without a trip through the loop still arrives in order and still waits when the buffer is
full, and a gateway counts prompt characters exactly where a token budget can use them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest

from rapport.agents import prompts
from rapport.agents.actors import hand_over
from rapport.config.loader import load_domain
from rapport.engine.backends.null_backend import NullBackend
from rapport.engine.gateway import Gateway, GatewayLimits
from rapport.engine.plan import sample_scenarios
from rapport.engine.seeding import derive_seed

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "domains"
DOMAINS = sorted(p for p in SHIPPED.iterdir() if (p / "domain.yaml").is_file())


@pytest.mark.parametrize("folder", DOMAINS, ids=lambda p: p.name)
def test_prompts_are_format_maps_text(folder):
    domain = load_domain(folder)
    template = domain.prompts.user_simulator
    for scenario in sample_scenarios(domain, "plan", 3, 0, 40, None):
        persona = scenario.persona
        low, high = persona.word_limit
        expected = template.format_map(
            {
                "domain": domain.info.description,
                "persona": prompts.describe_persona(scenario),
                "topics": prompts.describe_topics(scenario),
                "flaws": prompts.describe_flaws(domain, scenario),
                "writing_style": persona.writing_style.replace("_", " "),
                "word_limit": f"{low}-{high} words",
                "cooperation": ", ".join(
                    f"{mode.replace('_', ' ')} {share:.0%}"
                    for mode, share in persona.cooperation.items()
                ),
                "end_marker": domain.info.ending.marker,
                "user_role": domain.info.roles.user,
                "assistant_role": domain.info.roles.assistant,
            }
        )
        assert prompts.user_simulator_prompt(domain, scenario) == expected
    closing = domain.info.turn_instructions.closing
    assert prompts.instruction_message(domain, 4, 4, True).content == closing.format_map(
        {"exchange": 4, "target_exchanges": 4}
    )


def test_fill_leaves_what_it_does_not_parse_to_format_map():
    assert prompts.fill("x {a} {{y}} z", {"a": 2}) == "x 2 {y} z"
    assert prompts.fill("{a!r} {b:>3} {c[0]}", {"a": "q", "b": 1, "c": "k"}) == "'q'   1 k"
    with pytest.raises(KeyError):
        prompts.fill("{missing}", {})


def test_seeds_are_the_blake2b_of_the_joined_parts():
    digest = hashlib.blake2b(b"7\x1f3\x1fuser_sim", digest_size=8).digest()
    assert derive_seed(7, 3, "user_sim") == int.from_bytes(digest, "big") >> 1


async def _hand_over_order_and_backpressure() -> list[int]:
    send, receive = anyio.create_memory_object_stream[int](1)
    got: list[int] = []
    async with send, receive:
        await hand_over(send, 1)  # into the buffer at once
        with anyio.move_on_after(0.2) as waited:
            await hand_over(send, 2)  # full, and nobody receives: it waits
        assert waited.cancelled_caught
        async with anyio.create_task_group() as group:

            async def drain() -> None:
                for _ in range(3):
                    got.append(await receive.receive())

            group.start_soon(drain)
            await hand_over(send, 3)
            await hand_over(send, 4)
    return got


def test_hand_over_keeps_order_and_waits_when_the_buffer_is_full():
    assert anyio.run(_hand_over_order_and_backpressure) == [1, 3, 4]


def test_a_gateway_counts_prompt_characters_only_where_a_token_budget_can_use_them():
    instant = NullBackend()
    assert not Gateway(instant).admission.metered  # a simulator states no limits: nothing to count
    assert not Gateway(instant, GatewayLimits(rpm=60)).admission.metered
    assert Gateway(instant, GatewayLimits(tpm=6_000)).admission.metered
    assert Gateway(instant, GatewayLimits(input_tpm=6_000)).admission.metered
    real = NullBackend()
    real.provider = "openai"  # a real provider may still state its limits in its headers
    assert Gateway(real).admission.metered
    assert not Gateway(real, GatewayLimits(rpm=60)).admission.metered
