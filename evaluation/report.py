"""The evaluation report: `report.md` with the figures and warnings, and PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rapport.evaluation.statistics import Interval
from rapport.evaluation.summary import Delta, EvalSummary, SideFigures
from rapport.store.output_folder import staged_output

OUTPUT_KIND = "eval-report"
REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.json"
PLOTS = ("scores.png", "categories.png", "criteria.png")
TOP_CRITERIA = 20


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "— (undefined)"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _ci(interval: Interval | None) -> str:
    return "—" if interval is None else f"[{interval.low:.3f}, {interval.high:.3f}]"


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def _delta_table(deltas: Sequence[Delta], label: str) -> list[str]:
    lines = [
        f"| {label} | baseline | candidate | Δ | n (baseline / candidate) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {d.name} | {_num(d.baseline)} | {_num(d.candidate)} | {_signed(d.delta)} "
        f"| {d.n_baseline} / {d.n_candidate} |"
        for d in deltas
    ]
    return lines


def user_side_failed(side: SideFigures) -> str:
    """`failed / judged (share)` of the simulated user's side, or — when it is not judged."""
    share = side.user_failed_share
    if share is None:
        return "—"
    return f"{side.user_failed} / {side.user_judged} ({share:.0%})"


def render_markdown(summary: EvalSummary) -> str:
    paired = summary.paired
    base, cand = summary.sides
    lines = [
        f"# Evaluation {summary.eval_id}: candidate vs baseline",
        "",
        f"- Domain: **{summary.domain}**; {summary.scenarios} held-out scenarios "
        f"(seed {summary.seed}; never in a training set), each played by both sides.",
        f"- Baseline: `{base.backend}` (family: {base.family})",
        f"- Candidate: `{cand.backend}` (family: {cand.family})",
        f"- User simulator (same on both sides, same seeds per scenario): `{summary.user_sim}`",
        f"- Judges: {', '.join(summary.judges)} (families: {', '.join(summary.judge_families)}); "
        f"pass rule across judges: {summary.pass_rule}",
        f"- Paired scenarios compared: **N = {paired.n}**",
        "",
    ]
    if summary.warnings:
        lines += ["## Read this first", ""] + [f"- ⚠ {w}" for w in summary.warnings] + [""]
    lines += [
        "## Scores per side",
        "",
        "| side | judged / planned | mean score | 95 % CI (bootstrap) | pass rate | 95 % CI "
        "| safety-gate failures | user side failed |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for side in summary.sides:
        lines.append(
            f"| {side.side} | {side.judged} / {side.planned} | {_num(side.mean_score)} "
            f"| {_ci(side.mean_score_ci)} | {_num(side.pass_rate)} | {_ci(side.pass_rate_ci)} "
            f"| {side.safety_failures} | {user_side_failed(side)} |"
        )
    relative = "—" if paired.relative_change is None else f"{paired.relative_change * 100:+.1f} %"
    lines += [
        "",
        "## Paired difference (candidate − baseline)",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| mean score difference | {_signed(paired.mean_difference)} "
        f"(95 % CI {_ci(paired.difference_ci)}) |",
        f"| relative change | {relative} |",
        f"| Wilcoxon signed-rank | W = {_num(paired.wilcoxon_statistic, 1)}, "
        f"p = {_p(paired.wilcoxon_p)} ({paired.zero_differences} zero differences dropped) |",
        f"| paired t test | t = {_num(paired.t_statistic, 2)}, p = {_p(paired.t_p)} |",
        f"| effect size (Cohen's d_z) | {_num(paired.cohens_dz, 2)} |",
        f"| smallest d_z this N detects (80 % power, 5 %) "
        f"| {_num(paired.smallest_detectable_dz, 2)} |",
        f"| pass: both / baseline only / candidate only | {paired.pass_both} / "
        f"{paired.pass_baseline_only} / {paired.pass_candidate_only} |",
        f"| McNemar exact test on pass/fail | p = {_p(paired.mcnemar_p)} |",
        "",
        "![scores](scores.png)",
        "",
        "## Per category (mean category score over paired scenarios)",
        "",
        *_delta_table(summary.categories, "category"),
        "",
        "![categories](categories.png)",
        "",
        "## Per criterion (YES share of YES/NO verdicts)",
        "",
        *_delta_table(summary.criteria, "criterion"),
        "",
        "![criteria](criteria.png)",
        "",
        "## Safety gates (conversations where a judge saw the gate fail)",
        "",
    ]
    gates = sorted({g for side in summary.sides for g in side.gate_failures})
    if gates:
        lines += ["| gate | baseline | candidate |", "| --- | ---: | ---: |"]
        lines += [
            f"| {g} | {base.gate_failures.get(g, 0)} | {cand.gate_failures.get(g, 0)} |"
            for g in gates
        ]
    else:
        lines.append("No safety gate failed on either side.")
    lines += ["", "## Where the two sides differ most", ""]
    if not summary.examples:
        lines.append("No paired scenario scored differently.")
    for ex in summary.examples:
        lines += [
            f"### Scenario {ex.scenario_index}: baseline {ex.baseline_score:.3f}, "
            f"candidate {ex.candidate_score:.3f} (exchange {ex.exchange})",
            "",
            f"> **user (baseline side):** {ex.baseline_user}",
            ">",
            f"> **baseline:** {ex.baseline_reply}",
            "",
        ]
        if ex.candidate_user != ex.baseline_user:
            lines += [f"> **user (candidate side):** {ex.candidate_user}", ">"]
        lines += [f"> **candidate:** {ex.candidate_reply}", ""]
    return "\n".join(lines) + "\n"


def _bar_chart(deltas: Sequence[Delta], title: str, path: Path) -> None:
    shown = [d for d in deltas if d.delta is not None][:TOP_CRITERIA]
    figure, axes = plt.subplots(figsize=(8, 0.35 * len(shown) + 1.5))
    names = [d.name for d in shown][::-1]
    values = [d.delta for d in shown][::-1]
    colours = ["tab:green" if v >= 0 else "tab:red" for v in values]
    axes.barh(names, values, color=colours)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("candidate − baseline")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _score_plot(summary: EvalSummary, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    labels, means, errors = [], [], []
    for side in summary.sides:
        labels.append(side.side)
        mean = side.mean_score or 0.0
        means.append(mean)
        ci = side.mean_score_ci
        errors.append((mean - ci.low, ci.high - mean) if ci else (0.0, 0.0))
    axes.bar(
        labels,
        means,
        yerr=list(zip(*errors, strict=True)),
        capsize=8,
        color=["tab:gray", "tab:blue"],
    )
    axes.set_ylim(0, 1)
    axes.set_ylabel("mean rubric score (95 % bootstrap CI)")
    axes.set_title(f"N = {summary.paired.n} paired scenarios")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_eval_report(
    summary: EvalSummary,
    out: Path,
    summary_json: str,
    *,
    overwrite: bool = False,
    keep: Sequence[Path] = (),
) -> list[Path]:
    """Write report.md, summary.json and the plots into `out` (replaced whole, never clobbering
    files the user put there unless `overwrite`); returns the files."""
    with staged_output(out, OUTPUT_KIND, overwrite=overwrite, keep=keep) as staging:
        (staging / REPORT_FILE).write_text(render_markdown(summary), encoding="utf-8")
        (staging / SUMMARY_FILE).write_text(summary_json, encoding="utf-8")
        _score_plot(summary, staging / PLOTS[0])
        _bar_chart(summary.categories, "Category score change", staging / PLOTS[1])
        _bar_chart(summary.criteria, "YES share change per criterion", staging / PLOTS[2])
    return [out / REPORT_FILE, out / SUMMARY_FILE, *(out / name for name in PLOTS)]
