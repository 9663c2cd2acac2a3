"""Cohen's kappa, written once in views.sql (`cohen_kappa`, used as an aggregate by the judge,
person-judge and reviewer agreement views): checked on labels worked out by hand."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rapport.store.database import ensure_schema


@pytest.fixture
def conn(tmp_path: Path):
    with duckdb.connect(str(tmp_path / "rapport.duckdb")) as conn:
        ensure_schema(conn)  # the views file defines the macros
        yield conn


def _agreement(
    conn: duckdb.DuckDBPyConnection, first: list[str | None], second: list[str | None]
) -> tuple[float, float | None]:
    row = conn.execute(
        "SELECT percent_agreement(a, b), cohen_kappa(a, b) "
        "FROM (SELECT unnest(?::VARCHAR[]) AS a, unnest(?::VARCHAR[]) AS b)",
        [first, second],
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_kappa_discounts_the_agreement_chance_gives(conn) -> None:
    # 10 items, agreeing on 8; each rater says YES 6 times: chance (6·6 + 4·4) / 100 = .52
    first = ["YES"] * 6 + ["NO"] * 4
    second = ["YES"] * 5 + ["NO"] * 4 + ["YES"]
    percent, kappa = _agreement(conn, first, second)
    assert percent == 0.8
    assert kappa == round((0.8 - 0.52) / (1 - 0.52), 4)


def test_a_label_only_one_rater_used_adds_nothing_by_chance(conn) -> None:
    # agree on 2 of 4; chance (YES 2·2 + NO 1·2 + NA 1·0) / 16 = 6/16
    percent, kappa = _agreement(conn, ["YES", "YES", "NO", "NA"], ["YES", "NO", "NO", "YES"])
    assert percent == 0.5
    assert kappa == round((0.5 - 6 / 16) / (1 - 6 / 16), 4)


def test_agreement_no_better_than_chance_is_zero(conn) -> None:
    percent, kappa = _agreement(conn, ["YES", "YES", "NO", "NO"], ["YES", "NO", "NO", "YES"])
    assert (percent, kappa) == (0.5, 0.0)


def test_kappa_is_null_when_both_raters_gave_one_and_the_same_label(conn) -> None:
    assert _agreement(conn, ["YES"] * 4, ["YES"] * 4) == (1.0, None)
