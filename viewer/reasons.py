"""Why a conversation failed, in words: the pass rule across judges and what each judge said
(a score below its threshold, a gate that failed). The rules are those of the view
`side_judgement`: `all` (every judge passes), `majority` (more than half pass), `mean` (the
mean score reaches the highest threshold and no judge saw a gate fail)."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.store.viewer_reads import Assessment

RULES = {
    "all": "every judge must pass",
    "majority": "more than half the judges must pass",
    "mean": "the mean score must reach the threshold and no gate fail",
}


def judge_said(assessment: Assessment) -> str:
    """One judge's own verdict and, when it failed, why."""
    a = assessment
    if a.failed_gates:
        return f"judge {a.judge_id} failed it: gate {', '.join(a.failed_gates)} failed"
    if a.passed:
        return f"judge {a.judge_id} passed it ({a.score:.3f} ≥ {a.pass_threshold:g})"
    return f"judge {a.judge_id} failed it: score {a.score:.3f} below {a.pass_threshold:g}"


def _causes(rule: str, assessments: Sequence[Assessment], mean_score: float | None) -> list[str]:
    """What made the rule fail this conversation, shortest first."""
    if rule == "mean":
        threshold = max(a.pass_threshold for a in assessments)
        causes = []
        if mean_score is not None and mean_score < threshold:
            causes.append(f"mean score {mean_score:.3f} below the threshold {threshold:g}")
        causes += [
            f"gate {', '.join(a.failed_gates)} failed (judge {a.judge_id})"
            for a in assessments
            if a.failed_gates or a.safety_failed
        ]
        return causes
    failing = [judge_said(a) for a in assessments if not a.passed]
    if rule == "majority":
        passes = sum(a.passed for a in assessments)
        return [f"{passes} of {len(assessments)} judges passed it", *failing]
    return failing


def failure_reason(
    rule: str, assessments: Sequence[Assessment], mean_score: float | None, *, full: bool = True
) -> str:
    """Why the pass rule failed this conversation; `full` adds the rule and every judge's
    verdict (the conversation page), else the causes alone (a row of the list)."""
    if not assessments:
        return ""
    causes = _causes(rule, assessments, mean_score) or ["the pass rule across judges"]
    if not full:
        return "; ".join(causes)
    said = "; ".join(judge_said(a) for a in assessments)
    return (
        f"{'; '.join(causes)}. Pass rule “{rule}”: {RULES.get(rule, rule)}. "
        f"What each judge said: {said}."
    )
