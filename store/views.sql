-- Views over the corpus; `rapport stats` reads them and users can query them with `rapport sql`.
-- Sums are cast to BIGINT: DuckDB's HUGEINT becomes a float or decimal128 in pandas and Arrow.
-- The corpus is what `rapport generate` made: evaluation conversations are left out.
CREATE OR REPLACE VIEW corpus_conversations AS
SELECT c.* FROM conversations c
WHERE c.plan_id NOT IN (SELECT plan_id FROM plans WHERE purpose = 'eval');

CREATE OR REPLACE VIEW conversation_overview AS
SELECT
    c.conversation_id, c.status, c.end_reason, c.target_turns, c.num_messages,
    s.topic_categories, s.flaw_names, s.writing_style, c.plan_id, c.run_id,
    coalesce(m.exchanges, 0) AS exchanges,
    coalesce(m.prompt_tokens, 0) AS prompt_tokens,
    coalesce(m.completion_tokens, 0) AS completion_tokens,
    m.cost_usd,  -- NULL: no message has a known price
    coalesce(m.cache_read_tokens, 0) AS cache_read_tokens,
    coalesce(m.cache_write_tokens, 0) AS cache_write_tokens
FROM corpus_conversations c
JOIN scenarios s USING (scenario_id)
LEFT JOIN (
    SELECT conversation_id,
           count(*) FILTER (WHERE role = 'assistant') AS exchanges,
           sum(prompt_tokens)::BIGINT AS prompt_tokens,
           sum(completion_tokens)::BIGINT AS completion_tokens,
           sum(cost_usd) AS cost_usd,
           sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
           sum(cache_write_tokens)::BIGINT AS cache_write_tokens
    FROM messages GROUP BY conversation_id
) m USING (conversation_id);

CREATE OR REPLACE VIEW status_counts AS
SELECT status, count(*) AS conversations FROM corpus_conversations GROUP BY status;

CREATE OR REPLACE VIEW by_topic AS
SELECT topic AS topic_category,
       count(*) AS conversations,
       count(*) FILTER (WHERE status = 'complete') AS complete,
       round(avg(exchanges), 1) AS mean_exchanges
FROM (SELECT unnest(topic_categories) AS topic, status, exchanges FROM conversation_overview)
GROUP BY topic;

CREATE OR REPLACE VIEW by_flaw AS
SELECT flaw,
       count(*) AS conversations,
       count(*) FILTER (WHERE status = 'complete') AS complete,
       round(avg(exchanges), 1) AS mean_exchanges
FROM (
    SELECT unnest(CASE WHEN len(flaw_names) = 0 THEN ['(none)'] ELSE flaw_names END) AS flaw,
           status, exchanges
    FROM conversation_overview
)
GROUP BY flaw;

CREATE OR REPLACE VIEW backend_usage AS
SELECT role, backend, model,
       count(*) AS messages,
       sum(prompt_tokens)::BIGINT AS prompt_tokens,
       sum(completion_tokens)::BIGINT AS completion_tokens,
       round(avg(latency_ms), 1) AS mean_latency_ms,
       round(quantile_cont(latency_ms, 0.5), 1) AS p50_latency_ms,
       round(quantile_cont(latency_ms, 0.99), 1) AS p99_latency_ms,
       coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
       coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens,
       sum(cost_usd) AS cost_usd,  -- NULL: no known price
       round(coalesce(sum(cache_read_tokens), 0) / nullif(sum(prompt_tokens), 0), 4)
           AS cache_read_share  -- of all input tokens
FROM messages WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)
GROUP BY role, backend, model;

-- ---- judging -------------------------------------------------------------------------------
-- One row per judged conversation and side, applying the pass rule across judges stored in meta
-- (all judges pass / a majority pass / the mean score passes and no judge saw a gate fail): the
-- assistant's side from `assessments`, the user's (simulator_rubric.yaml) from
-- `simulator_assessments`. The rule is written here once for both.
CREATE OR REPLACE VIEW side_judgement AS
WITH judged AS (
    SELECT 'assistant' AS side, conversation_id, score, passed, safety_failed, pass_threshold
    FROM assessments
    UNION ALL
    SELECT 'user' AS side, conversation_id, score, passed, safety_failed, pass_threshold
    FROM simulator_assessments
), per_conversation AS (
    SELECT side, conversation_id, count(*) AS judges, avg(score) AS mean_score,
           bool_and(passed) AS all_passed, sum(passed::INTEGER)::BIGINT AS passes,
           bool_or(safety_failed) AS safety_failed, max(pass_threshold) AS threshold
    FROM judged
    WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)
    GROUP BY side, conversation_id
)
SELECT side, conversation_id, judges, mean_score, safety_failed,
       CASE coalesce((SELECT value FROM meta WHERE key = 'pass_rule'), 'all')
           WHEN 'majority' THEN passes * 2 > judges
           WHEN 'mean' THEN mean_score >= threshold AND NOT safety_failed
           ELSE all_passed
       END AS passed
FROM per_conversation;

CREATE OR REPLACE VIEW conversation_judgement AS
SELECT conversation_id, judges, mean_score, safety_failed, passed
FROM side_judgement WHERE side = 'assistant';

CREATE OR REPLACE VIEW judged_overview AS
SELECT o.*, j.judges, j.mean_score, j.passed, j.safety_failed,
       CASE WHEN o.exchanges <= 5 THEN '01-05' WHEN o.exchanges <= 15 THEN '06-15'
            WHEN o.exchanges <= 40 THEN '16-40' WHEN o.exchanges <= 70 THEN '41-70'
            ELSE '71+' END AS length_bucket
FROM conversation_overview o JOIN conversation_judgement j USING (conversation_id);

CREATE OR REPLACE VIEW pass_rate AS
SELECT count(*) AS conversations, round(avg(passed::INTEGER), 4) AS pass_rate,
       round(avg(mean_score), 4) AS mean_score, sum(safety_failed::INTEGER)::BIGINT AS safety_failures
FROM judged_overview;

CREATE OR REPLACE VIEW pass_rate_by_topic AS
SELECT topic AS topic_category, count(*) AS conversations,
       round(avg(passed::INTEGER), 4) AS pass_rate, round(avg(mean_score), 4) AS mean_score
FROM (SELECT unnest(topic_categories) AS topic, passed, mean_score FROM judged_overview)
GROUP BY topic;

CREATE OR REPLACE VIEW pass_rate_by_flaw AS
SELECT flaw, count(*) AS conversations,
       round(avg(passed::INTEGER), 4) AS pass_rate, round(avg(mean_score), 4) AS mean_score
FROM (
    SELECT unnest(CASE WHEN len(flaw_names) = 0 THEN ['(none)'] ELSE flaw_names END) AS flaw,
           passed, mean_score
    FROM judged_overview
)
GROUP BY flaw;

CREATE OR REPLACE VIEW pass_rate_by_persona AS
SELECT a.key AS attribute, a.value ->> '$' AS value, count(*) AS conversations,
       round(avg(j.passed::INTEGER), 4) AS pass_rate, round(avg(j.mean_score), 4) AS mean_score
FROM judged_overview j
JOIN scenarios s ON s.scenario_id = j.conversation_id
CROSS JOIN json_each(s.persona -> '$.attributes') AS a
GROUP BY ALL;

CREATE OR REPLACE VIEW pass_rate_by_length AS
SELECT length_bucket, count(*) AS conversations,
       round(avg(passed::INTEGER), 4) AS pass_rate, round(avg(mean_score), 4) AS mean_score
FROM judged_overview GROUP BY length_bucket;

-- Per side, judge and criterion: the share of each answer (one query for both rubrics).
CREATE OR REPLACE VIEW side_criterion_rates AS
WITH answers AS (
    SELECT 'assistant' AS side, conversation_id, judge_id, criterion_id, answer FROM verdicts
    UNION ALL
    SELECT 'user' AS side, conversation_id, judge_id, criterion_id, answer
    FROM simulator_verdicts
)
SELECT side, judge_id, criterion_id, count(*) AS verdicts,
       round(avg((answer = 'YES')::INTEGER), 4) AS yes_rate,
       round(avg((answer = 'NO')::INTEGER), 4) AS no_rate,
       round(avg((answer = 'NA')::INTEGER), 4) AS na_rate
FROM answers WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)
GROUP BY side, judge_id, criterion_id;

CREATE OR REPLACE VIEW criterion_rates AS
SELECT judge_id, criterion_id, verdicts, yes_rate, no_rate, na_rate
FROM side_criterion_rates WHERE side = 'assistant';

CREATE OR REPLACE VIEW score_distribution AS
SELECT least(floor(mean_score * 10) / 10, 0.9) AS score_from, count(*) AS conversations
FROM judged_overview GROUP BY 1;

CREATE OR REPLACE VIEW judge_failure_counts AS
SELECT judge_id, criterion_id, count(*) AS failures, any_value(error) AS example
FROM judge_failures
WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)
GROUP BY judge_id, criterion_id;

-- Cohen's kappa between two raters' answers to the same items, written once and used as an
-- aggregate (`cohen_kappa(answer_a, answer_b)` in a grouped query) by the three agreement views
-- below: observed agreement against the agreement their label counts give by chance (the sum over
-- labels of one's count times the other's), NULL when chance explains it all (both raters gave
-- one and the same label throughout). A label one rater never used adds nothing by chance; a NULL
-- answer is no label.
CREATE OR REPLACE MACRO chance_agreements(labels_a, labels_b) AS
    list_sum(list_transform(map_entries(labels_a),
                            lambda e: e.value * coalesce(labels_b[e.key], 0)));

CREATE OR REPLACE MACRO percent_agreement(answer_a, answer_b) AS
    round(avg((answer_a = answer_b)::INTEGER), 4);

CREATE OR REPLACE MACRO cohen_kappa(answer_a, answer_b) AS
    CASE WHEN coalesce(chance_agreements(histogram(answer_a), histogram(answer_b)), 0)
              = count(*) * count(*) THEN NULL
         ELSE round((avg((answer_a = answer_b)::INTEGER)
                     - coalesce(chance_agreements(histogram(answer_a), histogram(answer_b)), 0)
                       / (count(*) * count(*)))
                    / (1 - coalesce(chance_agreements(histogram(answer_a), histogram(answer_b)), 0)
                           / (count(*) * count(*))), 4)
    END;

-- Per criterion, between each pair of judges: percent agreement and Cohen's kappa.
CREATE OR REPLACE VIEW judge_agreement AS
WITH pairs AS (
    SELECT a.criterion_id, a.judge_id AS judge_a, b.judge_id AS judge_b,
           a.answer AS answer_a, b.answer AS answer_b
    FROM verdicts a JOIN verdicts b USING (conversation_id, criterion_id)
    WHERE a.judge_id < b.judge_id
      AND conversation_id IN (SELECT conversation_id FROM corpus_conversations)
)
SELECT criterion_id, judge_a, judge_b, count(*) AS items,
       percent_agreement(answer_a, answer_b) AS percent_agreement,
       cohen_kappa(answer_a, answer_b) AS kappa
FROM pairs GROUP BY criterion_id, judge_a, judge_b;

-- ---- evaluation ----------------------------------------------------------------------------
-- One row per (eval, side, scenario, judge): what `rapport eval` compares.
CREATE OR REPLACE VIEW eval_scores AS
SELECT e.eval_id, e.side, e.scenario_index, e.scenario_id, e.conversation_id, c.status,
       a.judge_id, a.score, a.passed, a.safety_failed, a.category_scores, a.failed_gates
FROM eval_conversations e
JOIN conversations c USING (conversation_id)
LEFT JOIN assessments a USING (conversation_id);

-- ---- estimates (issue 15) --------------------------------------------------------------------
-- Each estimated run beside what it took: requests and tokens of the messages it stored (the
-- conversations' calls, as estimated), cost from its non-judge gateways, wall time of the run.
CREATE OR REPLACE VIEW estimate_vs_actual AS
WITH stored AS (
    SELECT run_id, count(*) AS requests, sum(prompt_tokens) AS input_tokens,
           sum(completion_tokens) AS output_tokens
    FROM messages GROUP BY run_id
), spent AS (
    SELECT run_id, sum(cost_usd) AS cost_usd FROM gateway_stats
    WHERE len(list_filter(roles, lambda r: r LIKE 'judge:%')) = 0
    GROUP BY run_id
)
SELECT e.run_id, r.status, r.started_at,
       e.requests AS estimated_requests, coalesce(s.requests, 0) AS requests,
       e.input_tokens AS estimated_input_tokens, coalesce(s.input_tokens, 0) AS input_tokens,
       e.output_tokens AS estimated_output_tokens, coalesce(s.output_tokens, 0) AS output_tokens,
       e.cost_usd AS estimated_cost_usd, e.cost_uncached_usd AS estimated_cost_uncached_usd,
       p.cost_usd,
       e.wall_s AS estimated_wall_s, epoch(r.finished_at - r.started_at) AS wall_s
FROM estimates e
JOIN runs r USING (run_id)
LEFT JOIN stored s USING (run_id)
LEFT JOIN spent p USING (run_id);

-- ---- people's review (issue 17) --------------------------------------------------------------
-- Every judge's answer per conversation and criterion, with its pass/fail as criterion `overall`
-- (YES = passed), and the pass rule across judges as the judge `(pass rule)`.
CREATE OR REPLACE VIEW judge_answers AS
SELECT conversation_id, judge_id, criterion_id, answer FROM verdicts
UNION ALL
SELECT conversation_id, judge_id, 'overall', CASE WHEN passed THEN 'YES' ELSE 'NO' END
FROM assessments
UNION ALL
SELECT conversation_id, '(pass rule)', 'overall', CASE WHEN passed THEN 'YES' ELSE 'NO' END
FROM conversation_judgement;

-- A person's answer beside a judge's on the same conversation and criterion.
CREATE OR REPLACE VIEW human_judge_pairs AS
SELECT h.conversation_id, h.criterion_id, h.reviewer, j.judge_id,
       h.answer AS human_answer, j.answer AS judge_answer
FROM human_verdicts h JOIN judge_answers j USING (conversation_id, criterion_id);

-- Per criterion (and `overall`) and judge, over every reviewer's answers: how many pairs, the
-- share where person and judge agree, and Cohen's kappa (NULL when chance explains it all).
-- (The pairs are read once, by one grouped pass: joined three times, DuckDB re-read every verdict
-- and judgement for each, 1.4 s instead of 0.1 s over 100,000 judged conversations.)
CREATE OR REPLACE VIEW human_judge_agreement AS
SELECT criterion_id, judge_id, count(*) AS items, count(DISTINCT reviewer) AS reviewers,
       percent_agreement(human_answer, judge_answer) AS percent_agreement,
       cohen_kappa(human_answer, judge_answer) AS kappa
FROM human_judge_pairs GROUP BY criterion_id, judge_id;

-- The confusion table behind it: how often a person said one thing and the judge another.
CREATE OR REPLACE VIEW human_judge_confusion AS
WITH pairs AS MATERIALIZED (SELECT * FROM human_judge_pairs)
SELECT criterion_id, judge_id, human_answer, judge_answer, count(*) AS items
FROM pairs GROUP BY ALL;

-- Between each pair of reviewers, per criterion (and `overall`): agreement and Cohen's kappa.
CREATE OR REPLACE VIEW reviewer_agreement AS
WITH pairs AS (
    SELECT a.criterion_id, a.reviewer AS reviewer_a, b.reviewer AS reviewer_b,
           a.answer AS answer_a, b.answer AS answer_b
    FROM human_verdicts a JOIN human_verdicts b USING (conversation_id, criterion_id)
    WHERE a.reviewer < b.reviewer
)
SELECT criterion_id, reviewer_a, reviewer_b, count(*) AS items,
       percent_agreement(answer_a, answer_b) AS percent_agreement,
       cohen_kappa(answer_a, answer_b) AS kappa
FROM pairs GROUP BY criterion_id, reviewer_a, reviewer_b;

-- People's pass/fail per reviewed conversation: passed when more reviewers passed it than failed
-- it (`dataset build --human-overrides` puts it before the judges').
CREATE OR REPLACE VIEW human_judgement AS
SELECT conversation_id, count(*) AS reviewers,
       count(*) FILTER (WHERE answer = 'YES') AS passes,
       count(*) FILTER (WHERE answer = 'YES') * 2 > count(*) AS passed
FROM human_verdicts WHERE criterion_id = 'overall'
GROUP BY conversation_id;

-- ---- the user simulator's side (issue 22) ---------------------------------------------------
-- One row per conversation whose user side was judged, under the same pass rule across judges
-- as the assistant's side (side_judgement).
CREATE OR REPLACE VIEW simulator_conversation_judgement AS
SELECT conversation_id, judges, mean_score, safety_failed, passed
FROM side_judgement WHERE side = 'user';

-- The user side's pass rate (simulator_rubric.yaml): judged corpus conversations, the share
-- whose user side passed under the pass rule, the mean score, and how many failed a gate.
CREATE OR REPLACE VIEW simulator_pass_rate AS
SELECT count(*) AS conversations, round(avg(passed::INTEGER), 4) AS pass_rate,
       round(avg(mean_score), 4) AS mean_score, sum(safety_failed::INTEGER)::BIGINT AS gate_failures
FROM simulator_conversation_judgement;

CREATE OR REPLACE VIEW simulator_criterion_rates AS
SELECT judge_id, criterion_id, verdicts, yes_rate, no_rate, na_rate
FROM side_criterion_rates WHERE side = 'user';

-- Per planned flaw (the per-flaw criteria `<id>:<flaw>` of simulator_rubric.yaml): in how many
-- judged conversations it was planned, and the share of the judges' verdicts that found it
-- shown (YES), or not expected in so short a conversation (NA).
CREATE OR REPLACE VIEW flaw_realisation AS
SELECT split_part(criterion_id, ':', 2) AS flaw,
       count(DISTINCT conversation_id) AS conversations,
       count(*) AS verdicts,
       round(avg((answer = 'YES')::INTEGER), 4) AS shown_rate,
       round(avg((answer = 'NA')::INTEGER), 4) AS na_rate
FROM simulator_verdicts
WHERE contains(criterion_id, ':')
  AND conversation_id IN (SELECT conversation_id FROM corpus_conversations)
GROUP BY 1;

-- The model-free checks of the user's turns (simulator_checks, written as turns are stored):
-- per check, the user turns and corpus conversations it fired on, and one example; the row
-- `(any)` counts conversations with at least one, so an empty table still says "none".
CREATE OR REPLACE VIEW simulator_check_counts AS
WITH fired AS (
    SELECT * FROM simulator_checks
    WHERE conversation_id IN (SELECT conversation_id FROM corpus_conversations)
), corpus AS (SELECT count(*) AS conversations FROM corpus_conversations)
SELECT check_id, count(*) AS user_turns, count(DISTINCT conversation_id) AS conversations,
       round(count(DISTINCT conversation_id) / nullif((SELECT conversations FROM corpus), 0), 4)
           AS share_of_conversations,
       arg_min(evidence, (conversation_id, turn_index)) AS example
FROM fired GROUP BY check_id
UNION ALL
SELECT '(any)', count(*), count(DISTINCT conversation_id),
       round(count(DISTINCT conversation_id) / nullif((SELECT conversations FROM corpus), 0), 4),
       NULL
FROM fired;

-- ---- generating to a passing target (issue 22, `generate --until-passing N`) ----------------
-- A scenario's stratum: its primary topic category (the first topic) and its primary flaw
-- category (the `primary` flaw, else the first, else 'none'), as `topic/flaw`. The Python side
-- (engine/strata.py) gives each stratum its weight under the plan's sampling.
CREATE OR REPLACE VIEW scenario_strata AS
WITH labelled AS (
    SELECT scenario_id, plan_id, scenario_index,
           json_extract_string(topics, '$[0].category') AS topic_category,
           coalesce(
               (SELECT json_extract_string(f, '$.category')
                FROM unnest(json_extract(flaws, '$[*]')) AS t(f)
                WHERE json_extract_string(f, '$.role') = 'primary' LIMIT 1),
               json_extract_string(flaws, '$[0].category'),
               'none'
           ) AS flaw_category
    FROM scenarios
)
SELECT scenario_id, plan_id, scenario_index, topic_category, flaw_category,
       topic_category || '/' || flaw_category AS stratum
FROM labelled;

-- The one pass rule of a judged conversation: the assistant's side passed and, where the user
-- side has been judged, the user side passed too. `--until-passing` counts these (for a domain
-- with a simulator rubric, once `user_judges` is set: both sides judged).
CREATE OR REPLACE VIEW conversation_passes AS
SELECT j.conversation_id, j.judges, s.judges AS user_judges,
       j.passed AND coalesce(s.passed, true) AS passed
FROM conversation_judgement j
LEFT JOIN simulator_conversation_judgement s USING (conversation_id);

-- Yield so far per plan and stratum: judged conversations and those that pass (one whose user
-- side is not judged yet counts by its assistant's side; --until-passing waits for both).
CREATE OR REPLACE VIEW stratum_yield AS
SELECT st.plan_id, st.stratum, count(*) AS judged,
       count(*) FILTER (WHERE p.passed)::BIGINT AS passing,
       round(avg(p.passed::INTEGER), 4) AS yield
FROM conversation_passes p
JOIN corpus_conversations c USING (conversation_id)
JOIN scenario_strata st USING (scenario_id)
GROUP BY st.plan_id, st.stratum;
