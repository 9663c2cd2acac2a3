-- Views over the corpus; `rapport stats` reads them and users can query them with `rapport sql`.
CREATE OR REPLACE VIEW conversation_overview AS
SELECT
    c.conversation_id, c.status, c.end_reason, c.target_turns, c.num_messages,
    s.topic_categories, s.flaw_names, s.writing_style, c.plan_id, c.run_id,
    coalesce(m.exchanges, 0) AS exchanges,
    coalesce(m.prompt_tokens, 0) AS prompt_tokens,
    coalesce(m.completion_tokens, 0) AS completion_tokens
FROM conversations c
JOIN scenarios s USING (scenario_id)
LEFT JOIN (
    SELECT conversation_id,
           count(*) FILTER (WHERE role = 'assistant') AS exchanges,
           sum(prompt_tokens) AS prompt_tokens,
           sum(completion_tokens) AS completion_tokens
    FROM messages GROUP BY conversation_id
) m USING (conversation_id);

CREATE OR REPLACE VIEW status_counts AS
SELECT status, count(*) AS conversations FROM conversations GROUP BY status;

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
       sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens,
       round(avg(latency_ms), 1) AS mean_latency_ms,
       round(quantile_cont(latency_ms, 0.5), 1) AS p50_latency_ms,
       round(quantile_cont(latency_ms, 0.99), 1) AS p99_latency_ms
FROM messages GROUP BY role, backend, model;
