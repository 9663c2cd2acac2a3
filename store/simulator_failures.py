"""What the dataset build reads about the user side: which conversations' user simulator
failed (judged: a gate or the pass rule over `simulator_assessments`; unjudged: a model-free
check in `simulator_checks`), and, for what it keeps, how often the judges found each planned
flaw shown (per-flaw criteria are named `FLAW:<flaw name>` in `simulator_verdicts`)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import msgspec

SIMULATOR_FAILED = "simulator_failed"  # dataset_exclusions reasons
SIMULATOR_CHECK = "simulator_check"
FLAW_CRITERION_PREFIX = "FLAW:"


class SimulatorFailure(msgspec.Struct, frozen=True):
    conversation_id: str
    reason: str  # SIMULATOR_FAILED or SIMULATOR_CHECK
    detail: str  # the gates and score, or the check ids
    check_ids: tuple[str, ...] = ()


class FlawRealisation(msgspec.Struct, frozen=True):
    """One planned flaw over a set of conversations."""

    flaw: str
    conversations: int  # that planned it
    judged: int  # of those, judged on it (FLAW:<flaw> answered YES or NO)
    shown: int  # of those, found shown by most of their judges


def simulator_failures(
    conn: duckdb.DuckDBPyConnection, conversation_ids: Sequence[str]
) -> list[SimulatorFailure]:
    """Per conversation among `conversation_ids`, each way its user side failed."""
    ids = list(conversation_ids)
    judged = conn.execute(
        """
        WITH gates AS (
            SELECT conversation_id, list(DISTINCT gate ORDER BY gate) AS gates
            FROM (SELECT conversation_id, unnest(failed_gates) AS gate FROM simulator_assessments)
            GROUP BY conversation_id
        )
        SELECT j.conversation_id, j.mean_score, coalesce(g.gates, [])
        FROM simulator_conversation_judgement j LEFT JOIN gates g USING (conversation_id)
        WHERE NOT j.passed AND j.conversation_id IN (SELECT unnest(?))
        ORDER BY 1
        """,
        [ids],
    ).fetchall()
    checked = conn.execute(
        "SELECT conversation_id, list(DISTINCT check_id ORDER BY check_id) FROM simulator_checks "
        "WHERE conversation_id IN (SELECT unnest(?)) GROUP BY 1 ORDER BY 1",
        [ids],
    ).fetchall()
    failures = [
        SimulatorFailure(cid, SIMULATOR_FAILED, _judged_detail(float(score), list(gates)))
        for cid, score, gates in judged
    ]
    failures += [
        SimulatorFailure(cid, SIMULATOR_CHECK, ", ".join(checks), tuple(checks))
        for cid, checks in checked
    ]
    return failures


def _judged_detail(score: float, gates: list[str]) -> str:
    shown = f"mean score {score:.2f}"
    return f"failed gates: {', '.join(gates)}; {shown}" if gates else f"{shown}, below the rule"


def flaw_realisation(
    conn: duckdb.DuckDBPyConnection, conversation_ids: Sequence[str]
) -> list[FlawRealisation]:
    """Per planned flaw of `conversation_ids`: how many planned it, were judged on it, and were
    found to show it (more of their judges answering YES than NO)."""
    rows = conn.execute(
        f"""
        WITH planned AS (
            SELECT c.conversation_id, unnest(s.flaw_names) AS flaw
            FROM conversations c JOIN scenarios s USING (scenario_id)
            WHERE c.conversation_id IN (SELECT unnest(?))
        ), judged AS (
            SELECT conversation_id, substr(criterion_id, {len(FLAW_CRITERION_PREFIX) + 1}) AS flaw,
                   count(*) FILTER (WHERE answer = 'YES') AS yes,
                   count(*) FILTER (WHERE answer IN ('YES', 'NO')) AS answered
            FROM simulator_verdicts WHERE starts_with(criterion_id, ?)
            GROUP BY ALL
        )
        SELECT p.flaw, count(*), count(*) FILTER (WHERE j.answered > 0),
               count(*) FILTER (WHERE j.yes * 2 > j.answered)
        FROM planned p LEFT JOIN judged j USING (conversation_id, flaw)
        GROUP BY p.flaw ORDER BY p.flaw
        """,
        [list(conversation_ids), FLAW_CRITERION_PREFIX],
    ).fetchall()
    return [
        FlawRealisation(flaw, int(n), int(judged), int(shown)) for flaw, n, judged, shown in rows
    ]
