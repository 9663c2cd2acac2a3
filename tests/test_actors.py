"""Each actor builds its own view of the history; prompts come from the domain."""

from __future__ import annotations

from agents.actors import Spoken, _strip_marker
from agents.prompts import assistant_prompt, turn_instruction, user_simulator_prompt
from engine.plan import sample_scenario


class _View:
    """A bare actor stand-in: the view logic only needs a history."""

    from agents.actors import Actor

    view = Actor.view

    def __init__(self, history: list[Spoken]) -> None:
        self.history = history


def test_user_simulator_sees_its_own_turns_as_assistant():
    history = [Spoken(own=True, text="I feel stuck"), Spoken(own=False, text="Tell me more")]
    view = _View(history).view("persona prompt")
    assert [(m.role, m.content) for m in view] == [
        ("system", "persona prompt"),
        ("assistant", "I feel stuck"),
        ("user", "Tell me more"),
    ]


def test_assistant_sees_the_user_as_user():
    history = [Spoken(own=False, text="I feel stuck"), Spoken(own=True, text="Tell me more")]
    view = _View(history).view("coach prompt")
    assert [m.role for m in view] == ["system", "user", "assistant"]


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
    assert turn_instruction(tiny, 1, 4, False) == "Describe your bike problem."
    assert turn_instruction(tiny, 2, 4, False) == "Message 2 of 4: answer the mechanic."
    assert turn_instruction(tiny, 4, 4, True) == "Thank the mechanic and sign off."


def test_goodbye_marker_is_stripped():
    assert _strip_marker("thanks, bye <<BYE>>", "<<BYE>>") == ("thanks, bye", True)
    assert _strip_marker("more please", "<<BYE>>") == ("more please", False)
