"""`first_leaf`: the one way an error raised inside (nested) task groups is unwrapped."""

from __future__ import annotations

from rapport.agents.conversation import _first_cause
from rapport.config.exception_groups import first_leaf
from rapport.engine.errors import TurnFailed


def test_an_error_that_is_not_a_group_is_its_own_leaf() -> None:
    error = ValueError("alone")
    assert first_leaf(error) is error


def test_the_first_leaf_follows_each_groups_first_member_down() -> None:
    deep = KeyError("deep")
    group = BaseExceptionGroup(
        "outer",
        [ExceptionGroup("inner", [deep, ValueError("second")]), RuntimeError("later")],
    )
    assert first_leaf(group) is deep


def test_a_conversation_records_its_failed_turn_before_any_other_error() -> None:
    failed = TurnFailed("timeout", "no reply", 3)
    group = ExceptionGroup(
        "conversation", [RuntimeError("closed stream"), ExceptionGroup("actor", [failed])]
    )
    assert _first_cause(group) is failed


def test_a_conversation_without_a_failed_turn_records_its_first_error() -> None:
    first = RuntimeError("a bug")
    group = ExceptionGroup("conversation", [ExceptionGroup("actor", [first]), KeyError("k")])
    assert _first_cause(group) is first
