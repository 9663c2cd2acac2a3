"""The one stage shell: every stage's flags are decoded against the run config's types (a bound
in a Struct's `Meta` holds for a value given through a request as for one in RUN.yaml), and
generate, judge and eval show their runs through the one progress protocol."""

from __future__ import annotations

import anyio
import pytest

from rapport.config.errors import RapportError
from rapport.engine.errors import ProviderUnusable
from rapport.stages.evaluate import EvalRequest, run_eval
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.stages.progress import LiveRun
from tests.conftest import TINY_DOMAIN

SIMULATED_JUDGE = "simulated:quality=0.95"


def _generate(db, **flags):
    request = {"count": 2, "turns": 2, **flags}
    return generate(GenerateRequest(db=db, backend="simulated", **request))


def _eval(db, **flags):
    request = EvalRequest(
        db=db, baseline="simulated:quality=0.6", candidate="simulated:quality=0.9",
        user_backend="simulated", judges=(SIMULATED_JUDGE,),
        **{"scenarios": 2, "turns": 2, **flags},
    )  # fmt: skip
    return run_eval(request, environ={}, display=None)


def _judge(db, **flags):
    return judge_corpus(JudgeRequest(db=db, judges=(SIMULATED_JUDGE,), **flags), {})


@pytest.mark.parametrize(
    ("stage", "flags", "message"),
    [
        (_generate, {"max_active": -1}, "--max-active -1: expected int >= 1"),
        (_generate, {"max_active": 0}, "--max-active 0: expected int >= 1"),
        (_generate, {"turns": 0}, "--turns 0: expected int >= 1"),
        (_generate, {"seed": -3}, "--seed -3: expected int >= 0"),
        (_generate, {"max_cost": -5.0}, "--max-cost -5.0: expected float > 0.0"),
        (_generate, {"count": 0}, "--count 0: expected int >= 1"),
        (_eval, {"turns": -2}, "--turns -2: expected int >= 1"),
        (_eval, {"scenarios": -1}, "--scenarios -1: expected int >= 1"),
        (_eval, {"max_active": 0}, "--max-active 0: expected int >= 1"),
        (_judge, {"max_active": -1}, "--max-active -1: expected int >= 1"),
    ],
)
def test_a_value_out_of_its_fields_bounds_is_refused_in_one_line_before_anything_is_written(
    tmp_path, stage, flags, message
):
    db = tmp_path / "never.duckdb"
    with pytest.raises(RapportError) as refused:
        stage(db, **flags)
    # One line naming the flag; the command line exits 2 for it (input error: nothing run).
    assert str(refused.value) == message
    assert not isinstance(refused.value, ProviderUnusable)
    assert not db.exists()


def test_every_stage_shows_its_run_through_the_one_progress_protocol(db_path, tmp_path):
    seen: list[tuple[str, LiveRun]] = []

    def probe(stage: str):
        async def show(run: LiveRun) -> None:
            seen.append((stage, run))
            await anyio.sleep_forever()  # cancelled by the shell as the work ends

        return show

    generated = generate(
        GenerateRequest(db=db_path, count=3, turns=2, backend="simulated", domain=TINY_DOMAIN),
        display=probe("generate"),
    )
    judged = judge_corpus(JudgeRequest(db=db_path, judges=(SIMULATED_JUDGE,)), {}, probe("judge"))
    evaluated = run_eval(
        EvalRequest(
            db=tmp_path / "eval.duckdb", scenarios=2, baseline="simulated:quality=0.6",
            candidate="simulated:quality=0.9", user_backend="simulated",
            judges=(SIMULATED_JUDGE,), turns=2, domain=TINY_DOMAIN,
        ),
        environ={},
        display=probe("eval"),
    )  # fmt: skip
    stages = {stage: run for stage, run in seen}
    assert [stage for stage, _ in seen] == ["generate", "judge", "eval"]  # each shown once
    shown = {stage: sorted(run.gateways) for stage, run in stages.items()}
    assert shown == {
        "generate": ["assistant", "user_sim"],
        "judge": [f"judge:{SIMULATED_JUDGE}"],
        "eval": ["baseline", "candidate", "user_sim"],
    }
    assert stages["generate"].progress.done == generated.complete == 3
    judging = stages["judge"].progress.judging
    assert judging is not None and judging.judged == judged.judged == 3
    assert stages["eval"].progress.done == 2 * 2 == 2 * evaluated.scenarios
    assert stages["eval"].progress.judging is not None
