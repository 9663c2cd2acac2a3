"""Both halves of issue 22's first piece together, as a user runs them on the shipped therapy
domain: a simulated user that breaks character is caught by the model-free checks *and* by the
judges' simulator rubric, and `rapport dataset build` leaves every such conversation out,
recording each in `dataset_exclusions` and counting it in the card."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.conftest import rapport_in_process


def _rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def _generate_and_judge(db: Path, user_backend: str) -> None:
    result = rapport_in_process(
        "generate", "--db", str(db), "--count", "40", "--turns", "8", "--seed", "11",
        "--backend", "simulated", "--user-backend", user_backend, "--judge", "simulated:quality=0.97",
        "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def _ids(db: Path, sql: str) -> set[str]:
    return {cid for (cid,) in _rows(db, sql)}


def test_a_user_breaking_character_is_caught_by_checks_and_judges_and_left_out(tmp_path):
    db = tmp_path / "broken.duckdb"
    _generate_and_judge(db, "simulated:user_breaks=0.15")
    disclosed = _ids(
        db, "SELECT conversation_id FROM simulator_checks WHERE check_id = 'discloses_ai'"
    )
    reversed_ = _ids(
        db,
        "SELECT conversation_id FROM simulator_checks "
        "WHERE check_id IN ('copies_assistant', 'speaks_as_assistant')",
    )
    assert disclosed and reversed_  # the plant took: both kinds of break are in the corpus
    gate_failed = _ids(
        db,
        "SELECT conversation_id FROM simulator_assessments WHERE list_contains(failed_gates, 'NO_AI')",
    )
    role_no = _ids(
        db,
        "SELECT conversation_id FROM simulator_verdicts WHERE criterion_id = 'ROLE' AND answer = 'NO'",
    )
    assert disclosed <= gate_failed  # the judges saw every disclosure the checks saw
    assert reversed_ <= role_no  # and every copy or role reversal

    out = tmp_path / "dataset"
    built = rapport_in_process(
        "dataset", "build", "--db", str(db), "--out", str(out), "--format", "jsonl"
    )
    assert built.returncode == 0, built.stderr
    user_failed = _ids(
        db,
        "SELECT conversation_id FROM simulator_conversation_judgement WHERE NOT passed "
        "UNION SELECT conversation_id FROM simulator_checks",
    )
    assistant_passed = _ids(db, "SELECT conversation_id FROM conversation_judgement WHERE passed")
    kept_text = "\n".join(part.read_text() for part in out.glob("*.jsonl"))
    assert all(cid not in kept_text for cid in user_failed)
    excluded = _rows(
        db,
        "SELECT reason, count(DISTINCT conversation_id) FROM dataset_exclusions "
        "WHERE output = ? AND reason LIKE 'simulator_%' GROUP BY 1",
        [str(out.resolve())],
    )
    left_out = _ids(
        db, "SELECT conversation_id FROM dataset_exclusions WHERE reason LIKE 'simulator_%'"
    )
    assert left_out == user_failed & assistant_passed  # exactly those the rubric would have kept
    assert dict(excluded).keys() == {"simulator_failed", "simulator_check"}
    card = (out / "README.md").read_text()
    assert f"- conversations whose user side failed: {len(left_out)}, dropped" in card


def test_a_user_ignoring_its_flaws_is_found_by_the_judges_alone(tmp_path):
    shown, failed = {}, {}
    for share in (0.0, 1.0):
        db = tmp_path / f"ignores-{share}.duckdb"
        _generate_and_judge(db, f"simulated:user_ignores_flaw={share}")
        assert _rows(db, "SELECT count(*) FROM simulator_checks") == [(0,)]  # no check sees it
        ((shown[share],),) = _rows(
            db,
            "SELECT avg((answer = 'YES')::INTEGER) FROM simulator_verdicts "
            "WHERE criterion_id LIKE 'FLAW:%' AND answer <> 'NA'",
        )
        ((failed[share],),) = _rows(
            db, "SELECT avg((NOT passed)::INTEGER) FROM simulator_conversation_judgement"
        )
    assert shown[0.0] >= 0.8 and shown[1.0] <= 0.1  # flaws realised, then not
    assert failed[1.0] >= failed[0.0] + 0.5  # the user side fails where its flaws never show
