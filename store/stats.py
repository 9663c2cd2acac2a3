"""The corpus overview behind `rapport stats`: named sections of SQL over the views."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import msgspec

from rapport.config.constants import DEDUP_SHARED_TEXT_CHARS
from rapport.store.database import connect_for_reading
from rapport.store.query import QueryResult, query
from rapport.store.reads import Turn, transcripts
from rapport.store.transcripts import TRUNCATED_SQL

LATEST_GATEWAY_ROWS = """
    SELECT g.* FROM gateway_stats g JOIN runs r USING (run_id)
    QUALIFY row_number() OVER (PARTITION BY gateway ORDER BY r.started_at DESC) = 1
"""

SECTIONS: tuple[tuple[str, str], ...] = (
    (
        "Conversations by status",
        "SELECT status, conversations FROM status_counts ORDER BY conversations DESC",
    ),
    (
        "Exchanges per conversation (complete)",
        """
        SELECT count(*) AS conversations, min(exchanges) AS min,
               quantile_disc(exchanges, 0.5) AS p50, quantile_disc(exchanges, 0.9) AS p90,
               max(exchanges) AS max, round(avg(exchanges), 1) AS mean,
               sum(num_messages) AS messages
        FROM conversation_overview WHERE status = 'complete'
        """,
    ),
    (
        "Tokens per conversation (complete)",
        """
        SELECT sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
               quantile_disc(completion_tokens, 0.5) AS p50_completion,
               quantile_disc(completion_tokens, 0.9) AS p90_completion,
               max(completion_tokens) AS max_completion
        FROM conversation_overview WHERE status = 'complete'
        """,
    ),
    (
        "By topic category",
        "SELECT * FROM by_topic ORDER BY conversations DESC",
    ),
    ("By flaw", "SELECT * FROM by_flaw ORDER BY conversations DESC"),
    (
        "By backend (latencies in milliseconds)",
        """
        SELECT role, backend, model, messages, prompt_tokens, completion_tokens,
               round(mean_latency_ms)::BIGINT AS mean_ms, round(p50_latency_ms)::BIGINT AS p50_ms,
               round(p99_latency_ms)::BIGINT AS p99_ms
        FROM backend_usage ORDER BY role, backend, model
        """,
    ),
    (
        "Cost and prompt cache by role (cache-read share of input tokens)",
        """
        SELECT role, sum(messages)::BIGINT AS messages, sum(prompt_tokens)::BIGINT AS input_tokens,
               sum(cache_read_tokens)::BIGINT AS cache_read,
               sum(cache_write_tokens)::BIGINT AS cache_write,
               sum(completion_tokens)::BIGINT AS output_tokens,
               round(sum(cache_read_tokens) / nullif(sum(prompt_tokens), 0), 4)
                   AS cache_read_share,
               round(sum(cost_usd), 4) AS cost_usd,
               round(sum(cost_usd) / nullif(sum(messages), 0) * 1000, 4) AS usd_per_1k_messages
        FROM backend_usage GROUP BY role ORDER BY role
        """,
    ),
    (
        "Truncated turns (cut by the token budget)",
        f"""
        SELECT role, count(*) FILTER (WHERE finish_reason IN ({TRUNCATED_SQL})) AS truncated,
               count(*) AS messages
        FROM messages
        WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)
        GROUP BY role ORDER BY role
        """,
    ),
    (
        "Gateways (latest run of each)",
        """
        SELECT gateway, array_to_string(roles, ',') AS roles, requests, retries,
               rate_limited AS "429s", failed,
               prompt_tokens, completion_tokens, round(latency_p50_ms)::BIGINT AS p50_ms,
               round(latency_p99_ms)::BIGINT AS p99_ms, round(cost_usd, 4) AS cost_usd,
               coalesce(cache_read_tokens, 0) AS cache_read,
               round(coalesce(cache_read_tokens, 0) / nullif(prompt_tokens, 0), 4)
                   AS cache_read_share
        FROM gateway_stats g JOIN runs r USING (run_id)
        QUALIFY row_number() OVER (PARTITION BY gateway ORDER BY r.started_at DESC) = 1
        ORDER BY gateway
        """,
    ),
    (
        "Simulator checks (the user's turns, no model: copies, AI disclosure, role reversal, "
        "word limit, repeats)",
        "SELECT * FROM simulator_check_counts ORDER BY check_id = '(any)', check_id",
    ),
    (
        "Gateway limits and timeouts (latest run of each)",
        f"""
        SELECT gateway, max_in_flight, limits_source, coalesce(timeouts, 0) AS timeouts,
               coalesce(backpressure_timeouts, 0) AS backpressure_timeouts,
               round(effective_timeout_s, 1) AS effective_timeout_s
        FROM ({LATEST_GATEWAY_ROWS}) ORDER BY gateway
        """,
    ),
    (
        "Errors by kind",
        "SELECT kind, count(*) AS errors, any_value(message) AS example FROM errors "
        "GROUP BY kind ORDER BY errors DESC",
    ),
)

# Said once per gateway when its timeout was raised to fit one request (engine/service_time.py).
TIMEOUT_NOTICE_SECTION = (
    "Timeouts raised to fit one request (latest run of each gateway)",
    f"SELECT timeout_notice AS notice FROM ({LATEST_GATEWAY_ROWS}) "
    "WHERE timeout_notice IS NOT NULL ORDER BY gateway",
)


JUDGING_SECTIONS: tuple[tuple[str, str], ...] = (
    ("Pass rate (across judges, by the pass rule)", "SELECT * FROM pass_rate"),
    ("Pass rate by topic", "SELECT * FROM pass_rate_by_topic ORDER BY pass_rate"),
    ("Pass rate by flaw", "SELECT * FROM pass_rate_by_flaw ORDER BY pass_rate"),
    (
        "Pass rate by persona attribute",
        "SELECT * FROM pass_rate_by_persona ORDER BY attribute, pass_rate",
    ),
    ("Pass rate by length (exchanges)", "SELECT * FROM pass_rate_by_length ORDER BY length_bucket"),
    ("Score distribution", "SELECT * FROM score_distribution ORDER BY score_from"),
    ("YES rate per criterion", "SELECT * FROM criterion_rates ORDER BY judge_id, yes_rate"),
    (
        "Judge agreement per criterion",
        "SELECT * FROM judge_agreement ORDER BY kappa NULLS LAST, criterion_id",
    ),
    ("Judge failures", "SELECT * FROM judge_failure_counts ORDER BY failures DESC"),
    (
        "Yield by stratum (topic/flaw; passing: both sides by the pass rule; --until-passing)",
        "SELECT * FROM stratum_yield ORDER BY plan_id, stratum",
    ),
)


# The simulated user's side (simulator_rubric.yaml): shown once some user side is judged.
SIMULATOR_SECTIONS: tuple[tuple[str, str], ...] = (
    ("User side: pass rate (across judges, by the pass rule)", "SELECT * FROM simulator_pass_rate"),
    (
        "User side: YES rate per criterion",
        "SELECT * FROM simulator_criterion_rates ORDER BY judge_id, yes_rate, criterion_id",
    ),
    (
        "User side: planned flaws shown (flaw realisation)",
        "SELECT * FROM flaw_realisation ORDER BY shown_rate, flaw",
    ),
    (
        "User side: judge failures",
        "SELECT judge_id, criterion_id, count(*) AS failures, any_value(error) AS example "
        "FROM simulator_judge_failures "
        "WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations) "
        "GROUP BY ALL ORDER BY failures DESC",
    ),
)


# Each `generate` run's estimate (stages/estimate.py) beside what it took, once one is stored.
ESTIMATE_SECTION = (
    "Estimate vs actual (generate runs; judging not estimated)",
    """
    SELECT run_id, status, estimated_requests, requests,
           estimated_input_tokens, input_tokens,
           round(input_tokens / nullif(estimated_input_tokens, 0), 3) AS input_ratio,
           estimated_output_tokens, output_tokens,
           round(output_tokens / nullif(estimated_output_tokens, 0), 3) AS output_ratio,
           round(estimated_cost_usd, 4) AS estimated_cost_usd,
           round(estimated_cost_uncached_usd, 4) AS estimated_uncached_usd,
           round(cost_usd, 4) AS cost_usd,
           round(estimated_wall_s, 1) AS estimated_wall_s, round(wall_s, 1) AS wall_s
    FROM estimate_vs_actual ORDER BY started_at
    """,
)


# Judge vs people (`rapport view`'s reviews): shown once someone has reviewed a conversation.
HUMAN_SECTIONS: tuple[tuple[str, str], ...] = (
    (
        "Judge vs people per criterion (overall: pass/fail)",
        "SELECT * FROM human_judge_agreement "
        "ORDER BY criterion_id = 'overall' DESC, criterion_id, judge_id",
    ),
    (
        "Judge vs people: confusion (overall)",
        "SELECT judge_id, human_answer AS person, judge_answer AS judge, items "
        "FROM human_judge_confusion WHERE criterion_id = 'overall' ORDER BY ALL",
    ),
    (
        "Reviewers' agreement with each other",
        "SELECT * FROM reviewer_agreement "
        "ORDER BY criterion_id = 'overall' DESC, criterion_id, reviewer_a, reviewer_b",
    ),
)


class Section(msgspec.Struct, frozen=True):
    title: str
    result: QueryResult


def corpus_stats(path: Path) -> list[Section]:
    """Every section; the judging ones (each side's) only once something has been judged."""
    sections = [Section(title, query(path, sql)) for title, sql in SECTIONS]
    notices = query(path, TIMEOUT_NOTICE_SECTION[1])
    if notices.rows:
        sections.append(Section(TIMEOUT_NOTICE_SECTION[0], notices))
    if query(path, "SELECT count(*) FROM estimates").rows[0][0]:
        sections.append(Section(ESTIMATE_SECTION[0], query(path, ESTIMATE_SECTION[1])))
    judged = query(path, "SELECT count(*) FROM conversation_judgement").rows[0][0]
    if judged:
        sections += [Section(title, query(path, sql)) for title, sql in JUDGING_SECTIONS]
    if query(path, "SELECT count(*) FROM simulator_conversation_judgement").rows[0][0]:
        sections += [Section(title, query(path, sql)) for title, sql in SIMULATOR_SECTIONS]
    if query(path, "SELECT count(*) FROM human_verdicts").rows[0][0]:
        sections += [Section(title, query(path, sql)) for title, sql in HUMAN_SECTIONS]
    return sections


def complete_transcripts(path: Path) -> dict[str, list[Turn]]:
    """The transcripts of every complete corpus conversation, in conversation_id order."""
    with closing(connect_for_reading(path)) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT conversation_id FROM corpus_conversations WHERE status = 'complete' "
                "ORDER BY conversation_id"
            ).fetchall()
        ]
        return {cid: turns for cid, turns in transcripts(conn, ids).items() if turns}


# The report's plots (reports.judging): two columns each, a label and a value.
PLOT_SQL = {
    "score_distribution": "SELECT score_from, conversations FROM score_distribution ORDER BY 1",
    "pass_rate_by_topic": "SELECT topic_category, pass_rate FROM pass_rate_by_topic ORDER BY 2",
    "pass_rate_by_flaw": "SELECT flaw, pass_rate FROM pass_rate_by_flaw ORDER BY 2",
    "pass_rate_by_length": "SELECT length_bucket, pass_rate FROM pass_rate_by_length ORDER BY 1",
    "criterion_yes_rate": (
        "SELECT judge_id || ' ' || criterion_id, yes_rate FROM criterion_rates ORDER BY 1"
    ),
    "flaw_realisation": "SELECT flaw, shown_rate FROM flaw_realisation ORDER BY 2, 1",
}


def plot_rows(path: Path, name: str) -> QueryResult:
    """The rows of one of the report's plots."""
    return query(path, PLOT_SQL[name])


def duplicate_sections(path: Path, shown: int) -> list[Section]:
    """The largest near-duplicate clusters per side (as the last pass stored them in
    `duplicate_clusters`): size, the kept member, the lowest similarity to it and the start of
    the kept member's first turn on that side (the text the members share)."""
    sections = []
    for side in ("assistant", "user"):
        sql = f"""
            WITH top AS (
                SELECT cluster_id, count(*) AS size, min(similarity) AS lowest
                FROM duplicate_clusters WHERE side = '{side}'
                GROUP BY cluster_id ORDER BY size DESC, cluster_id LIMIT {int(shown)}
            )
            SELECT t.size, t.cluster_id AS kept, round(t.lowest, 3) AS lowest_similarity,
                   replace(left(arg_min(m.content, m.turn_index), {DEDUP_SHARED_TEXT_CHARS}),
                           chr(10), ' ') AS shared_text_start
            FROM top t JOIN messages m ON m.conversation_id = t.cluster_id AND m.role = '{side}'
            GROUP BY ALL ORDER BY t.size DESC, kept
        """
        title = f"Near-duplicate clusters, {side} side (largest {shown:,})"
        sections.append(Section(title, query(path, sql)))
    return sections
