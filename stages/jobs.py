"""The job streams every stage runs through `engine.scheduler.run_bounded`: a plan read one
chunk at a time (memory stays flat however long the plan), never all of it at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

from rapport.config import constants
from rapport.config.shards import WHOLE_PLAN, Shard
from rapport.config.sides import Side
from rapport.store.database import Database
from rapport.store.judgements import JudgeJob, load_unjudged
from rapport.store.plans import ScenarioDecoder, UnfinishedConversation, load_unfinished

JUDGE_CHUNK = 500  # conversations read at once per judge


def plan_chunks(count: int) -> Iterator[tuple[int, int]]:
    """Scenario index ranges `[start, stop)` covering `0..count-1`, one plan chunk each."""
    chunk = constants.PLAN_CHUNK_SCENARIOS
    for start in range(0, count, chunk):
        yield start, min(start + chunk, count)


async def unfinished_conversations(
    database: Database,
    plan_ids: Sequence[str],
    count: int,
    *,
    include_failed: bool,
    shard: Shard = WHOLE_PLAN,
) -> AsyncIterator[tuple[int, UnfinishedConversation]]:
    """(which plan, conversation) still to do below `count` (of one shard), the plans
    interleaved chunk by chunk so that several plans (an evaluation's sides) run at once."""
    decoder = ScenarioDecoder()  # the run's waiting conversations share repeated plan texts
    for start, stop in plan_chunks(count):
        per_plan = [
            await database.run(
                lambda conn, plan_id=plan_id, start=start, stop=stop: load_unfinished(
                    conn,
                    plan_id,
                    start,
                    stop,
                    include_failed=include_failed,
                    decoder=decoder,
                    shard=shard,
                )
            )
            for plan_id in plan_ids
        ]
        longest = max((len(jobs) for jobs in per_plan), default=0)
        for position in range(longest):
            for which, jobs in enumerate(per_plan):
                if position < len(jobs):
                    yield which, jobs[position]


async def unjudged_conversations(
    database: Database,
    judge_id: str,
    plan_ids: Sequence[str] | None = None,
    below_index: int | None = None,
    exclude_run: str | None = None,
    side: Side = "assistant",
    judged_plans: Sequence[str] | None = None,
) -> AsyncIterator[JudgeJob]:
    """Complete conversations this judge has not fully assessed on `side` (of the corpus, or
    of the given plans below an index; of `judged_plans` only, when given), read by key a
    chunk at a time."""
    after = ""
    while True:
        chunk = await database.run(
            lambda conn, after=after: load_unjudged(
                conn,
                judge_id,
                after,
                JUDGE_CHUNK,
                plan_ids,
                below_index,
                exclude_run,
                side,
                judged_plans,
            )
        )
        if not chunk:
            return
        for job in chunk:
            yield job
        after = chunk[-1].scenario.scenario_id
