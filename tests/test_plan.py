"""Plans are seeded: the same seed gives the same scenarios, whatever the count."""

from __future__ import annotations

from collections import Counter

from rapport.engine.plan import plan_id_for, sample_scenario, sample_scenarios


def test_same_seed_same_plan(therapy):
    plan_id = plan_id_for(therapy, 7, None)
    first = list(sample_scenarios(therapy, plan_id, 7, 0, 50))
    second = list(sample_scenarios(therapy, plan_id, 7, 0, 50))
    assert first == second


def test_different_seed_different_plan(therapy):
    a = list(sample_scenarios(therapy, "a", 1, 0, 20))
    b = list(sample_scenarios(therapy, "a", 2, 0, 20))
    assert [s.persona for s in a] != [s.persona for s in b]
    assert plan_id_for(therapy, 1, None) != plan_id_for(therapy, 2, None)


def test_scenario_depends_only_on_seed_and_index(therapy):
    plan_id = plan_id_for(therapy, 3, None)
    batch = list(sample_scenarios(therapy, plan_id, 3, 0, 100))
    assert sample_scenario(therapy, plan_id, 3, 57) == batch[57]


def test_lengths_follow_the_domain_distribution(therapy):
    scenarios = list(sample_scenarios(therapy, "p", 0, 0, 2000))
    lengths = [s.target_turns for s in scenarios]
    assert min(lengths) >= 3 and max(lengths) <= 100
    short = sum(3 <= n <= 15 for n in lengths) / len(lengths)
    assert 0.30 < short < 0.40  # the shipped distribution gives 35 % to 3–15 exchanges


def test_fixed_turns_override_the_distribution(therapy):
    scenarios = list(sample_scenarios(therapy, "p", 0, 0, 100, turns=12))
    assert {s.target_turns for s in scenarios} == {12}
    assert plan_id_for(therapy, 0, 12) != plan_id_for(therapy, 0, None)


def test_flaw_policy_is_followed(therapy):
    scenarios = list(sample_scenarios(therapy, "p", 0, 0, 2000))
    without = sum(not s.flaws for s in scenarios) / len(scenarios)
    assert 0.16 < without < 0.24  # none_rate 0.2
    policy = therapy.flaws.policy
    for scenario in scenarios:
        if scenario.flaws:
            roles = Counter(f.role for f in scenario.flaws)
            assert roles["primary"] == 1
            assert 1 <= roles["secondary"] <= 2
            primary = next(f for f in scenario.flaws if f.role == "primary")
            assert primary.category in policy.primary_from
            assert len({f.name for f in scenario.flaws}) == len(scenario.flaws)


def test_personas_bring_several_distinct_topics(therapy):
    for scenario in sample_scenarios(therapy, "p", 0, 0, 300):
        assert 3 <= len(scenario.topics) <= 5
        assert len({(t.category, t.subtopic) for t in scenario.topics}) == len(scenario.topics)
        low, high = scenario.persona.word_limit
        assert low <= high


def test_tiny_domain_plans(tiny):
    scenarios = list(sample_scenarios(tiny, "t", 0, 0, 50))
    assert {s.persona.name for s in scenarios} <= {"Ada", "Bo", "Cy"}
    assert all(2 <= s.target_turns <= 6 for s in scenarios)
