"""The report folder of an evaluation (`rapport eval --out`): refused before anything is played
when it cannot be written, then written from the summary. The command line calls these around
rapport._stages.run_evaluate; the folder rules (never clobber a user's files, never replace the
folder that holds the database) live in the store."""

from __future__ import annotations

from pathlib import Path

import msgspec

from rapport.evaluation.report import OUTPUT_KIND, write_eval_report
from rapport.evaluation.summary import EvalSummary
from rapport.store.output_folder import check_output_folder


def check_report_folder(db: Path, out: Path, *, overwrite: bool = False) -> None:
    """Raise BadInput now for an `out` the report could not be written to (a file, a folder of
    other files without `overwrite`, a folder holding `db` or the working directory)."""
    check_output_folder(out, OUTPUT_KIND, overwrite=overwrite, keep=(db,))


def report_folder(db: Path, summary: EvalSummary, out: Path | None) -> Path:
    """Where the report goes: `out`, else eval-<id> beside the database."""
    return out if out is not None else db.parent / summary.eval_id


def write_report_folder(
    db: Path, summary: EvalSummary, out: Path | None, *, overwrite: bool = False
) -> list[Path]:
    """Write report.md, summary.json and the plots (report.md first in the list returned).
    Raises BadInput for a folder it may not replace."""
    folder = report_folder(db, summary, out)
    summary_json = msgspec.json.encode(summary).decode()
    return write_eval_report(summary, folder, summary_json, overwrite=overwrite, keep=(db,))
