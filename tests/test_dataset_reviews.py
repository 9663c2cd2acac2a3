"""`dataset build --human-overrides` and `--reviewed-only`: a person's pass/fail from
`rapport view` decides over the judges', and a build can keep reviewed conversations only."""

from __future__ import annotations

import json

import duckdb
import pytest

from rapport.store.reviews import Review, save_review
from tests.conftest import error_lines, rapport_in_process
from tests.viewer_helpers import judged_corpus


@pytest.fixture
def reviewed(tmp_path):
    """A judged corpus where a person failed one passing conversation and passed one failing
    one (two reviewers: a tie on a third is not a pass)."""
    db, _ = judged_corpus(tmp_path, 12)
    with duckdb.connect(str(db), read_only=True) as conn:
        passing = [
            r[0]
            for r in conn.execute(
                "SELECT conversation_id FROM conversation_judgement WHERE passed ORDER BY 1"
            ).fetchall()
        ]
        failing = [r[0] for r in conn.execute(
            "SELECT conversation_id FROM conversation_judgement WHERE NOT passed ORDER BY 1"
        ).fetchall()]  # fmt: skip
    assert len(passing) >= 1 and len(failing) >= 2
    save_review(db, Review(passing[0], "ann", {"overall": "NO"}))
    save_review(db, Review(failing[0], "ann", {"overall": "YES"}))
    save_review(db, Review(failing[1], "ann", {"overall": "YES"}))
    save_review(db, Review(failing[1], "bob", {"overall": "NO"}))
    return db, passing, failing


def _built(db, out, *flags) -> set[str]:
    outcome = rapport_in_process(
        "dataset", "build", "--db", str(db), "--out", str(out), "--format", "jsonl", *flags
    )
    assert outcome.returncode == 0, outcome
    kept = set()
    for split in ("train", "validation", "test"):
        path = out / f"{split}.jsonl"
        if path.exists():
            kept |= {json.loads(line)["conversation_id"] for line in path.read_text().splitlines()}
    return kept


def test_without_the_flags_the_judges_decide(reviewed, tmp_path):
    db, passing, _ = reviewed
    assert _built(db, tmp_path / "plain") == set(passing)


def test_human_overrides_put_a_persons_pass_or_fail_first(reviewed, tmp_path):
    db, passing, failing = reviewed
    kept = _built(db, tmp_path / "over", "--human-overrides")
    assert kept == (set(passing) - {passing[0]}) | {failing[0]}  # failing[1]: a tie, not a pass
    card = (tmp_path / "over" / "README.md").read_text()
    assert "reviewed by people: 3, passed by them: 1; people's pass/fail overrides" in card


def test_reviewed_only_keeps_reviewed_conversations(reviewed, tmp_path):
    db, passing, failing = reviewed
    assert _built(db, tmp_path / "only", "--human-overrides", "--reviewed-only") == {failing[0]}
    # without overrides the judges decide among the reviewed: only the one they passed
    assert _built(db, tmp_path / "judged", "--reviewed-only") == {passing[0]}


def test_reviewed_only_without_any_review_is_one_line(tmp_path):
    db, _ = judged_corpus(tmp_path, 3)
    outcome = rapport_in_process(
        "dataset", "build", "--db", str(db), "--out", str(tmp_path / "o"), "--format", "jsonl",
        "--reviewed-only",
    )  # fmt: skip
    assert outcome.returncode == 2 and len(error_lines(outcome)) == 1
    assert "review some in `rapport view` first?" in outcome.stderr
