"""The figures of an evaluation, from its stored assessments: per side, paired, per category,
per criterion, safety gates, the scenarios where the sides differ most, and honest warnings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import msgspec

from rapport.evaluation.statistics import Interval, PairedComparison, bootstrap_mean_ci
from rapport.evaluation.statistics import compare_paired as paired_test
from rapport.store.evaluations import SIDES, JudgedSide
from rapport.store.reads import Turn

EXAMPLES = 3
EXAMPLE_CHARS = 600
TOO_FEW_PAIRS = 10  # below this, no test means anything
FEW_PAIRS = 30  # below this, say the interval is wide and the p-values rough


class SideFigures(msgspec.Struct, frozen=True):
    side: str
    backend: str  # the spec as typed
    family: str
    planned: int
    complete: int
    failed: int
    judged: int  # complete and assessed by every judge
    mean_score: float | None
    mean_score_ci: Interval | None
    pass_rate: float | None
    pass_rate_ci: Interval | None
    safety_failures: int  # judged conversations where a judge saw a gate fail
    gate_failures: dict[str, int]  # gate criterion -> conversations
    # The simulated user's side (simulator_rubric.yaml), when the domain judges it: its
    # conversations judged by every judge, and those where the user failed its pass rule or a
    # gate (a comparison on broken users is not a comparison).
    user_judged: int | None = None
    user_failed: int | None = None

    @property
    def user_failed_share(self) -> float | None:
        if not self.user_judged or self.user_failed is None:
            return None
        return self.user_failed / self.user_judged


class Delta(msgspec.Struct, frozen=True):
    name: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    n_baseline: int
    n_candidate: int


class Example(msgspec.Struct, frozen=True):
    scenario_index: int
    baseline_score: float
    candidate_score: float
    exchange: int  # the first exchange where the replies differ
    baseline_user: str
    candidate_user: str
    baseline_reply: str
    candidate_reply: str


class EvalSummary(msgspec.Struct, frozen=True):
    """An evaluation's result (`rapport eval`, `Corpus.evaluate`): each side's figures on the
    same held-out scenarios, the paired difference and its significance."""

    eval_id: str
    domain: str
    scenarios: int
    seed: int
    user_sim: str
    judges: list[str]  # "id (model)"
    judge_families: list[str]
    pass_rule: str
    sides: list[SideFigures]
    paired: PairedComparison
    categories: list[Delta]
    criteria: list[Delta]
    examples: list[Example]
    warnings: list[str]


class ConversationScore(msgspec.Struct, frozen=True):
    """One side's conversation of one scenario, across the judges."""

    score: float
    passed: bool
    safety_failed: bool
    categories: dict[str, float]
    failed_gates: frozenset[str]


def combine_judges(
    assessments: Sequence[JudgedSide], judges: int, pass_rule: str, threshold: float
) -> dict[tuple[str, int], ConversationScore]:
    """(side, scenario) -> score, for conversations every judge assessed, by the pass rule."""
    grouped: dict[tuple[str, int], list[JudgedSide]] = defaultdict(list)
    for row in assessments:
        grouped[row.side, row.scenario_index].append(row)
    combined = {}
    for key, rows in grouped.items():
        if len(rows) < judges:
            continue
        mean = sum(r.score for r in rows) / len(rows)
        safety = any(r.safety_failed for r in rows)
        passes = sum(r.passed for r in rows)
        passed = {
            "majority": passes * 2 > len(rows),
            "mean": mean >= threshold and not safety,
        }.get(pass_rule, passes == len(rows))
        names = {name for r in rows for name in r.category_scores}
        categories = {
            name: sum(r.category_scores[name] for r in rows if name in r.category_scores)
            / sum(name in r.category_scores for r in rows)
            for name in names
        }
        gates = frozenset(g for r in rows for g in r.failed_gates)
        combined[key] = ConversationScore(mean, passed, safety, categories, gates)
    return combined


def side_figures(
    side: str,
    backend: str,
    family: str,
    planned: int,
    statuses: Mapping[str, int],
    scores: Mapping[int, ConversationScore],
    seed: int,
    user_scores: Mapping[int, ConversationScore] | None = None,
) -> SideFigures:
    values = [s.score for s in scores.values()]
    passes = [float(s.passed) for s in scores.values()]
    gates: dict[str, int] = defaultdict(int)
    for s in scores.values():
        for gate in s.failed_gates:
            gates[gate] += 1
    return SideFigures(
        side=side,
        backend=backend,
        family=family,
        planned=planned,
        complete=statuses.get("complete", 0),
        failed=statuses.get("failed", 0),
        judged=len(values),
        mean_score=sum(values) / len(values) if values else None,
        mean_score_ci=bootstrap_mean_ci(values, seed),
        pass_rate=sum(passes) / len(passes) if passes else None,
        pass_rate_ci=bootstrap_mean_ci(passes, seed),
        safety_failures=sum(s.safety_failed for s in scores.values()),
        gate_failures=dict(sorted(gates.items())),
        user_judged=None if user_scores is None else len(user_scores),
        user_failed=None
        if user_scores is None
        else sum(user_failed(s) for s in user_scores.values()),
    )


def user_failed(score: ConversationScore) -> bool:
    """The user side failed: its pass rule, or a gate (even where a majority passed it)."""
    return not score.passed or score.safety_failed


def category_deltas(
    base: Mapping[int, ConversationScore], cand: Mapping[int, ConversationScore]
) -> list[Delta]:
    """Mean category score per side over the paired scenarios, largest change first."""
    paired = sorted(base.keys() & cand.keys())
    names = sorted({n for i in paired for n in (*base[i].categories, *cand[i].categories)})
    deltas = []
    for name in names:
        b = [base[i].categories[name] for i in paired if name in base[i].categories]
        c = [cand[i].categories[name] for i in paired if name in cand[i].categories]
        deltas.append(_delta(name, b, c))
    return sorted(deltas, key=lambda d: -abs(d.delta or 0))


def criterion_deltas(answers: Sequence[tuple[str, str, str, int]]) -> list[Delta]:
    """YES share of the answered (YES or NO) verdicts per criterion and side."""
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: {side: defaultdict(int) for side in SIDES}
    )
    for side, criterion, answer, n in answers:
        counts[criterion][side][answer] += n
    deltas = []
    for criterion, sides in counts.items():
        rates = {}
        answered = {}
        for side in SIDES:
            yes, no = sides[side]["YES"], sides[side]["NO"]
            answered[side] = yes + no
            rates[side] = yes / (yes + no) if yes + no else None
        base, cand = rates["baseline"], rates["candidate"]
        deltas.append(
            Delta(
                name=criterion,
                baseline=base,
                candidate=cand,
                delta=cand - base if base is not None and cand is not None else None,
                n_baseline=answered["baseline"],
                n_candidate=answered["candidate"],
            )
        )
    return sorted(deltas, key=lambda d: -abs(d.delta or 0))


def _delta(name: str, base: Sequence[float], cand: Sequence[float]) -> Delta:
    b = sum(base) / len(base) if base else None
    c = sum(cand) / len(cand) if cand else None
    return Delta(
        name=name,
        baseline=b,
        candidate=c,
        delta=c - b if b is not None and c is not None else None,
        n_baseline=len(base),
        n_candidate=len(cand),
    )


def most_different(
    base: Mapping[int, ConversationScore], cand: Mapping[int, ConversationScore], k: int = EXAMPLES
) -> list[int]:
    """The paired scenarios with the largest score difference (ties: lowest index)."""
    paired = base.keys() & cand.keys()
    ranked = sorted(paired, key=lambda i: (-abs(cand[i].score - base[i].score), i))
    return [i for i in ranked[:k] if cand[i].score != base[i].score]


def example(
    index: int,
    base_score: float,
    cand_score: float,
    base_transcript: Sequence[Turn],
    cand_transcript: Sequence[Turn],
) -> Example:
    """The first exchange where the two assistants' replies differ (or the first exchange)."""
    exchanges = min(len(base_transcript), len(cand_transcript)) // 2
    chosen = next(
        (
            e
            for e in range(exchanges)
            if base_transcript[2 * e + 1].content != cand_transcript[2 * e + 1].content
        ),
        0,
    )

    def text(transcript: Sequence[Turn], position: int) -> str:
        if position >= len(transcript):
            return ""
        content = transcript[position].content
        return content if len(content) <= EXAMPLE_CHARS else content[:EXAMPLE_CHARS] + " …"

    return Example(
        scenario_index=index,
        baseline_score=base_score,
        candidate_score=cand_score,
        exchange=chosen + 1,
        baseline_user=text(base_transcript, 2 * chosen),
        candidate_user=text(cand_transcript, 2 * chosen),
        baseline_reply=text(base_transcript, 2 * chosen + 1),
        candidate_reply=text(cand_transcript, 2 * chosen + 1),
    )


def compare_sides(
    base: Mapping[int, ConversationScore], cand: Mapping[int, ConversationScore], seed: int
) -> PairedComparison:
    paired = sorted(base.keys() & cand.keys())
    return paired_test(
        [base[i].score for i in paired],
        [cand[i].score for i in paired],
        [base[i].passed for i in paired],
        [cand[i].passed for i in paired],
        seed,
    )


def honesty_warnings(
    paired: PairedComparison,
    sides: Sequence[SideFigures],
    judge_families: Sequence[str],
    same_backend: bool,
    user_family: str = "",
) -> list[str]:
    """What a reader must know before trusting the figures."""
    found = []
    if paired.n < TOO_FEW_PAIRS:
        found.append(
            f"Only {paired.n} paired scenarios: too few for any test here to mean anything; "
            "treat the figures as anecdotes."
        )
    elif paired.n < FEW_PAIRS:
        found.append(
            f"Small N ({paired.n} pairs): intervals are wide and p-values rough; "
            f"only effects of d_z ≥ {paired.smallest_detectable_dz:.2f} are reliably detected."
        )
    if paired.n and paired.zero_differences * 2 >= paired.n:
        found.append(
            f"{paired.zero_differences} of {paired.n} pairs scored exactly the same: the rubric "
            "barely separates these models (the Wilcoxon test drops those pairs)."
        )
    for side in sides:
        lost = side.planned - side.judged
        if lost:
            found.append(
                f"{side.side}: {lost} of {side.planned} scenarios are not in the comparison "
                f"({side.failed} failed, {side.planned - side.complete - side.failed} unfinished, "
                f"the rest not judged by every judge)."
            )
    for judge_family in sorted(set(judge_families)):
        shared = [s.side for s in sides if s.family == judge_family]
        if shared:
            found.append(
                f"A judge is of the {judge_family} family, like the {' and '.join(shared)}: "
                "judges tend to favour their own family's writing."
            )
    for side in sides:
        share = side.user_failed_share
        if share:
            found.append(
                f"{side.side}: the simulated user failed its own rubric in {side.user_failed} of "
                f"{side.user_judged} judged conversations ({share:.0%}): those pairs compare "
                "assistants on users the plan did not ask for."
            )
    if same_backend:
        found.append("Baseline and candidate are the same backend: any difference is noise.")
    if "rapport-simulator" in {s.family for s in sides} | set(judge_families) | {user_family}:
        found.append(
            "Simulated backends are involved: the figures show the harness at work, "
            "not the quality of any model."
        )
    return found
