"""Where each judged side's results live: the assistant's in verdicts / judge_failures /
assessments, the simulated user's in the simulator_ tables of the same shapes."""

from __future__ import annotations

import msgspec

from rapport.config.sides import Side


class SideTables(msgspec.Struct, frozen=True):
    verdicts: str
    judge_failures: str
    assessments: str
    judgement: str  # the view applying the pass rule across judges


SIDE_TABLES: dict[Side, SideTables] = {
    "assistant": SideTables("verdicts", "judge_failures", "assessments", "conversation_judgement"),
    "user": SideTables(
        "simulator_verdicts",
        "simulator_judge_failures",
        "simulator_assessments",
        "simulator_conversation_judgement",
    ),
}
