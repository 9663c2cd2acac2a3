"""One filter builder for every conversation list: the corpus reads (`ConversationFilter`) and
the viewer's list (`ListQuery`) turn the same field into the same clause."""

from __future__ import annotations

from rapport.store.conversation_filters import filter_clauses
from rapport.store.reads import ConversationFilter
from rapport.store.viewer_reads import ListQuery


def test_the_same_filter_is_the_same_clause_for_the_reads_and_the_viewer() -> None:
    reads = filter_clauses(ConversationFilter(status="complete", topic="grief", flaw="vague"))
    viewer = filter_clauses(ListQuery(status="complete", topic="grief", flaw="vague"))
    assert reads == viewer
    assert reads[1] == ["complete", "grief", "vague"]


def test_a_filter_left_unset_adds_no_clause() -> None:
    assert filter_clauses(ConversationFilter()) == ([], [])
    assert filter_clauses(ListQuery(text="", sort="score", page=3)) == ([], [])


def test_each_parameter_follows_its_clause_in_order() -> None:
    clauses, params = filter_clauses(
        ListQuery(passed=True, persona=("age", "30"), failed="CQ1", text="Sleep")
    )
    assert [clause.count("?") for clause in clauses] == [1, 2, 2, 1]
    assert params == [True, "age", "30", "CQ1", "CQ1", "sleep"]
