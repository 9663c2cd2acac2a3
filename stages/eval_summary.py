"""What `rapport eval` reports: its figures read back from the store over scenarios `0..N-1`,
by this invocation's judges, and computed by rapport.evaluation (figures and statistics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapport.engine.factory import gateway_key
from rapport.evaluation.families import family_of
from rapport.evaluation.summary import (
    ConversationScore,
    EvalSummary,
    category_deltas,
    combine_judges,
    compare_sides,
    criterion_deltas,
    example,
    honesty_warnings,
    most_different,
    side_figures,
)
from rapport.store.evaluations import (
    SIDES,
    criterion_answers,
    judged_sides,
    side_transcripts,
    status_counts,
)

if TYPE_CHECKING:  # the stage imports this module
    from rapport.stages.evaluate import PreparedEval


def summarise(prepared: PreparedEval) -> EvalSummary:
    """The figures of this eval over scenarios `0..N-1`, by this invocation's judges."""
    request, domain = prepared.request, prepared.domain
    judge_ids = [judge.id for judge in prepared.judges]
    count = request.scenarios

    def read(conn):
        return (
            status_counts(conn, prepared.eval_id, count),
            judged_sides(conn, prepared.eval_id, judge_ids, count),
            criterion_answers(conn, prepared.eval_id, judge_ids, count),
            judged_sides(conn, prepared.eval_id, judge_ids, count, "user"),
        )

    statuses, assessments, answers, user_assessments = prepared.database.run_sync(read)
    rule = prepared.settings.pass_rule
    combined = combine_judges(assessments, len(judge_ids), rule, domain.rubric.pass_threshold)
    by_side = {side: {i: s for (sd, i), s in combined.items() if sd == side} for side in SIDES}
    users: dict[str, dict[int, ConversationScore]] | None = None
    if domain.simulator_rubric is not None:  # the user side is judged: how often it failed
        threshold = domain.simulator_rubric.pass_threshold
        user_combined = combine_judges(user_assessments, len(judge_ids), rule, threshold)
        users = {s: {i: c for (sd, i), c in user_combined.items() if sd == s} for s in SIDES}
    base, cand = by_side["baseline"], by_side["candidate"]
    specs = {"baseline": request.baseline, "candidate": request.candidate}
    sides = [
        side_figures(
            side,
            specs[side],
            family_of(prepared.sides[side]),
            count,
            statuses[side],
            by_side[side],
            prepared.seed,
            None if users is None else users[side],
        )
        for side in SIDES
    ]
    paired = compare_sides(base, cand, prepared.seed)
    chosen = most_different(base, cand)
    transcripts = prepared.database.run_sync(
        lambda conn: side_transcripts(conn, prepared.eval_id, chosen)
    )
    examples = [
        example(
            i,
            base[i].score,
            cand[i].score,
            transcripts[("baseline", i)],
            transcripts[("candidate", i)],
        )
        for i in chosen
    ]
    judge_families = [family_of(judge.config.backend) for judge in prepared.judges]
    same = gateway_key(prepared.sides["baseline"]) == gateway_key(prepared.sides["candidate"])
    return EvalSummary(
        eval_id=prepared.eval_id,
        domain=domain.name,
        scenarios=count,
        seed=prepared.seed,
        user_sim=prepared.gateways["user_sim"].label,
        judges=[f"{j.id} ({j.gateway.label})" for j in prepared.judges],
        judge_families=judge_families,
        pass_rule=prepared.settings.pass_rule,
        sides=sides,
        paired=paired,
        categories=category_deltas(base, cand),
        criteria=criterion_deltas(answers),
        examples=examples,
        warnings=honesty_warnings(
            paired, sides, judge_families, same, family_of(prepared.user_sim)
        ),
    )
