"""Each actor builds its own view of the history; prompts come from the domain."""

from __future__ import annotations

from rapport.agents.actors import _strip_marker
from rapport.agents.prompts import assistant_prompt, instruction_message, user_simulator_prompt
from rapport.engine.plan import sample_scenario
from rapport.engine.types import ChatMessage


class _View:
    """A bare actor stand-in: the view logic only needs a history."""

    from rapport.agents.actors import Actor

    view = Actor.view
    said = Actor.said
    heard = Actor.heard

    def __init__(self, history: list[ChatMessage]) -> None:
        self.history = history


def test_an_actor_sees_its_own_turns_as_assistant_and_the_others_as_user():
    user_simulator = _View([])
    user_simulator.said("I feel stuck")
    user_simulator.heard("Tell me more")
    view = user_simulator.view("persona prompt")
    assert [(m.role, m.content) for m in view] == [
        ("system", "persona prompt"),
        ("assistant", "I feel stuck"),
        ("user", "Tell me more"),
    ]


def test_the_assistant_sees_the_same_exchange_the_other_way_round():
    assistant = _View([])
    assistant.heard("I feel stuck")
    assistant.said("Tell me more")
    assert [m.role for m in assistant.view("coach prompt")] == ["system", "user", "assistant"]


def test_user_prompt_carries_the_scenario(therapy):
    scenario = sample_scenario(therapy, "p", 1, 0)
    prompt = user_simulator_prompt(therapy, scenario)
    assert scenario.persona.name in prompt
    for topic in scenario.topics:
        assert topic.description in prompt
    assert therapy.info.ending.marker in prompt


def test_assistant_prompt_knows_nothing_of_the_persona(therapy):
    scenario = sample_scenario(therapy, "p", 1, 0)
    prompt = assistant_prompt(therapy)
    assert therapy.prompts.system_prompt in prompt
    assert all(topic.description not in prompt for topic in scenario.topics)


def test_turn_instructions(tiny):
    assert instruction_message(tiny, 1, 4, False).content == "Describe your bike problem."
    assert instruction_message(tiny, 2, 4, False).content == "Message 2 of 4: answer the mechanic."
    assert instruction_message(tiny, 4, 4, True).content == "Thank the mechanic and sign off."


def test_goodbye_marker_is_stripped():
    assert _strip_marker("thanks, bye <<BYE>>", "<<BYE>>") == ("thanks, bye", True)
    assert _strip_marker("more please", "<<BYE>>") == ("more please", False)
