"""`rapport report`: the judging figures as Markdown tables with PNG plots (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from rapport.config.secrets import PATTERNS_ONLY, Redactor
from rapport.judges.repetition import describe, repetition_report
from rapport.store.output_folder import staged_output
from rapport.store.query import QueryResult, query
from rapport.store.stats import (
    HUMAN_SECTIONS,
    JUDGING_SECTIONS,
    SECTIONS,
    SIMULATOR_SECTIONS,
    complete_transcripts,
    plot_rows,
)


class Plot(NamedTuple):
    filename: str  # its stem names its rows in store.stats.PLOT_SQL
    title: str
    xlabel: str
    ylabel: str


PLOTS = (
    Plot("score_distribution.png", "Score distribution", "mean score (bin start)", "conversations"),
    Plot("pass_rate_by_topic.png", "Pass rate by topic", "topic category", "pass rate"),
    Plot("pass_rate_by_flaw.png", "Pass rate by flaw", "flaw", "pass rate"),
    Plot("pass_rate_by_length.png", "Pass rate by length", "exchanges", "pass rate"),
    Plot("criterion_yes_rate.png", "YES rate per criterion", "judge and criterion", "YES rate"),
    Plot("flaw_realisation.png", "Planned flaws shown (user side)", "flaw", "shown rate"),
)


def markdown_table(result: QueryResult) -> str:
    if not result.rows:
        return "_(none)_"
    head = "| " + " | ".join(result.columns) + " |"
    rule = "|" + "---|" * len(result.columns)
    body = [
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in result.rows
    ]
    return "\n".join([head, rule, *body])


def _bar_chart(result: QueryResult, title: str, xlabel: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(row[0]) for row in result.rows]
    values = [float(row[1] or 0) for row in result.rows]
    figure, axes = plt.subplots(figsize=(max(6, 0.45 * len(labels) + 2), 4))
    axes.bar(labels, values, color="tab:blue")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.tick_params(axis="x", labelrotation=60)
    if ylabel.endswith("rate"):
        axes.set_ylim(0, 1)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


REPORT_FILE = "report.md"
OUTPUT_KIND = "report"


def write_report(
    db: Path, out: Path, redactor: Redactor = PATTERNS_ONLY, *, overwrite: bool = False
) -> Path:
    """Write `report.md` and one PNG per plot into `out` (replaced whole, never clobbering
    files the user put there unless `overwrite`); returns the Markdown path. The text passes
    through `redactor` (a database written before redaction may hold an echoed key)."""
    lines = [f"# Rapport corpus report\n\nDatabase: `{db}`\n"]
    for title, sql in (*SECTIONS, *JUDGING_SECTIONS):
        lines += [f"## {title}\n", markdown_table(query(db, sql)), ""]
    if query(db, "SELECT count(*) FROM simulator_conversation_judgement").rows[0][0]:
        for title, sql in SIMULATOR_SECTIONS:  # the simulated user's side was judged
            lines += [f"## {title}\n", markdown_table(query(db, sql)), ""]
    if query(db, "SELECT count(*) FROM human_verdicts").rows[0][0]:  # people reviewed some
        for title, sql in HUMAN_SECTIONS:
            lines += [f"## {title}\n", markdown_table(query(db, sql)), ""]
    plots = [(plot, plot_rows(db, plot.filename.removesuffix(".png"))) for plot in PLOTS]
    with staged_output(out, OUTPUT_KIND, overwrite=overwrite, keep=(db,)) as staging:
        lines.append("## Plots\n")
        for (filename, title, xlabel, ylabel), result in plots:
            if result.rows:
                _bar_chart(result, title, xlabel, ylabel, staging / filename)
                lines.append(f"![{title}]({filename})\n")
        lines.append("## Repetition and diversity\n")
        for title, result in describe(repetition_report(complete_transcripts(db))):
            lines += [f"### {title}\n", markdown_table(result), ""]
        (staging / REPORT_FILE).write_text(redactor("\n".join(lines)), encoding="utf-8")
    return out / REPORT_FILE
