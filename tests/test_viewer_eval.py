"""`rapport view`'s Eval page: baseline beside candidate per held-out scenario with both scores
and the first exchange where the replies part, and the iterations of a domain."""

from __future__ import annotations

import re
import shutil

import duckdb
import pytest

from tests.conftest import TINY_DOMAIN, rapport_in_process
from tests.viewer_helpers import serving


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer-eval")
    domain = folder / "tiny"
    shutil.copytree(TINY_DOMAIN, domain)
    db = folder / "e.duckdb"
    made = rapport_in_process(
        "eval", "--db", str(db), "--scenarios", "3", "--turns", "2", "--domain", str(domain),
        "--user-backend", "simulated", "--judges", "simulated",
        "--baseline", "simulated:quality=0.6", "--candidate", "simulated:quality=0.9",
        "--out", str(folder / "report"),
    )  # fmt: skip
    assert made.returncode == 0, made
    iterated = rapport_in_process(
        "iterate", "--domain", str(domain), "--count", "4", "--turns", "2",
        "--judge", "simulated", "--backend", "simulated", "--db", str(db),
    )  # fmt: skip
    assert iterated.returncode == 0, iterated
    return db


def test_the_eval_page_sets_both_sides_beside_each_other(evaluated):
    with duckdb.connect(str(evaluated), read_only=True) as conn:
        (eval_id,) = conn.execute("SELECT eval_id FROM eval_runs").fetchone()
        expected = conn.execute(
            "SELECT scenario_index, side, conversation_id, avg(score) FROM eval_scores "
            "WHERE eval_id = ? GROUP BY ALL ORDER BY ALL",
            [eval_id],
        ).fetchall()
        replies = conn.execute(
            "SELECT e.scenario_index, e.side, m.exchange, m.content FROM eval_conversations e "
            "JOIN messages m USING (conversation_id) WHERE e.eval_id = ? AND m.role = 'assistant'",
            [eval_id],
        ).fetchall()
    with serving(evaluated) as viewer:
        status, listing, _ = viewer.get("/eval")
        assert status == 200
        assert f"<a href='/eval/{eval_id}'>" in listing
        assert "bike_repair" in listing and "pass rate change" in listing
        status, page, _ = viewer.get(f"/eval/{eval_id}")
        assert status == 200
        assert viewer.get("/eval/nope")[0] == 404
    rows = re.findall(r"<tr class='pair'>(.*?)</tr>", page)
    assert len(rows) == 3
    for index, _side, cid, score in expected:
        assert f"<a href='/c/{cid}'>" in rows[index]
        assert f"{score:.3f}" in rows[index]
    by_side = {(index, side, exchange): text for index, side, exchange, text in replies}
    for index in range(3):
        parted = [
            exchange
            for exchange in (1, 2)
            if (index, "baseline", exchange) in by_side
            and (index, "candidate", exchange) in by_side
            and by_side[index, "baseline", exchange] != by_side[index, "candidate", exchange]
        ]
        shown = f"exchange {parted[0]}" if parted else "same replies"
        assert rows[index].endswith(f"<td>{shown}</td>"), rows[index]
