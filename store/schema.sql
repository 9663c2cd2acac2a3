-- Rapport's tables. Primary keys make every write idempotent.
-- The stamp that marks a Rapport database: schema_version, schema_fingerprint, rapport_version
-- (store/stamp.py). A DuckDB file with tables and no stamp is refused, never migrated blindly.
CREATE TABLE IF NOT EXISTS rapport_meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);

-- Settings of the corpus (e.g. the judges' pass rule).
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);

CREATE TABLE IF NOT EXISTS plans (
    plan_id VARCHAR PRIMARY KEY,
    domain VARCHAR NOT NULL,
    domain_fingerprint VARCHAR NOT NULL,
    seed BIGINT NOT NULL,
    turns INTEGER,              -- fixed target length, NULL when drawn from the domain
    domain_snapshot JSON,       -- the whole decoded domain, for provenance
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    plan_id VARCHAR NOT NULL,
    command VARCHAR NOT NULL,
    count INTEGER NOT NULL,
    status VARCHAR NOT NULL,    -- running | finished | interrupted
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    user_backend VARCHAR,
    assistant_backend VARCHAR,
    settings JSON,              -- the run config, never with secrets
    rapport_version VARCHAR
);

CREATE TABLE IF NOT EXISTS scenarios (
    scenario_id VARCHAR PRIMARY KEY,
    plan_id VARCHAR NOT NULL,
    scenario_index INTEGER NOT NULL,
    seed BIGINT NOT NULL,
    persona JSON NOT NULL,
    topics JSON NOT NULL,
    flaws JSON NOT NULL,
    topic_categories VARCHAR[] NOT NULL,
    flaw_names VARCHAR[] NOT NULL,
    writing_style VARCHAR NOT NULL,
    target_turns INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS conversations (
    conversation_id VARCHAR PRIMARY KEY,
    scenario_id VARCHAR NOT NULL,
    plan_id VARCHAR NOT NULL,
    scenario_index INTEGER NOT NULL,
    target_turns INTEGER NOT NULL,   -- in exchanges (one user message + one reply)
    status VARCHAR NOT NULL,         -- pending | running | interrupted | complete | failed
    end_reason VARCHAR,              -- target_reached | goodbye | error
    num_messages INTEGER NOT NULL DEFAULT 0,
    run_id VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    error VARCHAR
);

CREATE TABLE IF NOT EXISTS messages (
    conversation_id VARCHAR NOT NULL,
    turn_index INTEGER NOT NULL,     -- 0-based and contiguous within a conversation
    role VARCHAR NOT NULL,           -- user | assistant
    content VARCHAR NOT NULL,
    exchange INTEGER NOT NULL,       -- 1-based exchange number
    final BOOLEAN NOT NULL,          -- the user's last message (target reached or goodbye)
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms DOUBLE,
    backend VARCHAR,
    model VARCHAR,
    run_id VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, turn_index)
);

CREATE TABLE IF NOT EXISTS errors (
    run_id VARCHAR,
    conversation_id VARCHAR,
    turn_index INTEGER,
    role VARCHAR,
    kind VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS gateway_stats (
    run_id VARCHAR NOT NULL,
    gateway VARCHAR NOT NULL,        -- provider:model[@base_url]
    roles VARCHAR[] NOT NULL,        -- the roles that used it (schema 2: a comma-joined VARCHAR)
    provider VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    requests BIGINT NOT NULL,
    succeeded BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    retries BIGINT NOT NULL,
    rate_limited BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    latency_p50_ms DOUBLE,
    latency_p99_ms DOUBLE,
    cost_usd DOUBLE,                 -- NULL when the model has no known price
    rpm_limit INTEGER,
    tpm_limit INTEGER,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, gateway)
);

CREATE TABLE IF NOT EXISTS verdicts (
    conversation_id VARCHAR NOT NULL,
    judge_id VARCHAR NOT NULL,
    criterion_id VARCHAR NOT NULL,
    answer VARCHAR NOT NULL,         -- YES | NO | NA
    reasoning VARCHAR,
    judge_model VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, judge_id, criterion_id)
);

CREATE TABLE IF NOT EXISTS judge_failures (
    conversation_id VARCHAR NOT NULL,
    judge_id VARCHAR NOT NULL,
    criterion_id VARCHAR NOT NULL,
    error VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS assessments (
    conversation_id VARCHAR NOT NULL,
    judge_id VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    passed BOOLEAN NOT NULL,
    safety_failed BOOLEAN NOT NULL,
    pass_threshold DOUBLE NOT NULL,
    category_scores JSON NOT NULL,
    failed_gates VARCHAR[] NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, judge_id)
);

-- Scenarios kept out of training for evaluation (the evaluation stage marks them).
ALTER TABLE scenarios ADD COLUMN IF NOT EXISTS held_out BOOLEAN DEFAULT false;

-- What a plan is for: `corpus` (generate), `held_out` (scenarios kept for evaluation) or `eval`
-- (one side of an evaluation). Corpus views, judging and datasets read corpus plans only.
ALTER TABLE plans ADD COLUMN IF NOT EXISTS purpose VARCHAR DEFAULT 'corpus';

-- Why each reply stopped (`stop`, or `length` / `max_tokens` when cut by the token budget).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS finish_reason VARCHAR;

-- `rapport eval`: two assistants on the same held-out scenarios, judged by the same judges.
CREATE TABLE IF NOT EXISTS eval_runs (
    eval_id VARCHAR PRIMARY KEY,
    domain VARCHAR NOT NULL,
    held_out_plan_id VARCHAR NOT NULL,
    seed BIGINT NOT NULL,
    turns INTEGER,
    baseline VARCHAR NOT NULL,       -- backend label of each side
    candidate VARCHAR NOT NULL,
    user_sim VARCHAR NOT NULL,
    judges VARCHAR[] NOT NULL,       -- judge ids (their models are in verdicts.judge_model)
    pass_rule VARCHAR NOT NULL,
    scenarios INTEGER NOT NULL,      -- the largest N asked for so far
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    summary JSON                     -- the latest report's figures
);

CREATE TABLE IF NOT EXISTS eval_conversations (
    eval_id VARCHAR NOT NULL,
    side VARCHAR NOT NULL,           -- baseline | candidate
    scenario_index INTEGER NOT NULL,
    scenario_id VARCHAR NOT NULL,    -- the held-out scenario played
    conversation_id VARCHAR NOT NULL,
    PRIMARY KEY (eval_id, side, scenario_index)
);

CREATE TABLE IF NOT EXISTS examples (
    example_id VARCHAR PRIMARY KEY,  -- conversation_id:end_exchange
    conversation_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL,          -- train | validation | test
    first_exchange INTEGER NOT NULL, -- after truncation from the oldest turns
    end_exchange INTEGER NOT NULL,
    num_tokens INTEGER NOT NULL,
    output_dir VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- `rapport iterate`: one row per iteration of a domain, with its figures for the next diff.
CREATE TABLE IF NOT EXISTS iterations (
    domain VARCHAR NOT NULL,
    iteration INTEGER NOT NULL,
    plan_id VARCHAR NOT NULL,
    domain_fingerprint VARCHAR NOT NULL,
    count INTEGER NOT NULL,
    figures JSON NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, iteration)
);

-- Issue 13: limits learned or stated, not only configured; attempts per turn.
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS max_in_flight INTEGER;
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS limits_source VARCHAR;  -- configured | stated | learned
ALTER TABLE messages ADD COLUMN IF NOT EXISTS attempts INTEGER;  -- 1 + retries; latency_ms spans them all
-- Calls given up on at their timeout: a 429 or reply the client never saw shows here.
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS timeouts BIGINT;

-- Batches the writer put on disk beside the file while another process held it (store.spool),
-- each recorded in the transaction that finally wrote it, so none is ever applied twice.
CREATE TABLE IF NOT EXISTS spooled_batches (
    batch_id VARCHAR PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL
);
-- One replica of a backend with several endpoints (its row's gateway is `<gateway>@<endpoint>`).
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS endpoint VARCHAR;

-- Issue 15: prompt caching and cost. Of prompt_tokens (every input token), those read from and
-- written to the provider's prompt cache; the cost of each message at its model's price
-- (NULL: no known price, e.g. a simulated or local model).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS cache_read_tokens INTEGER;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS cache_write_tokens INTEGER;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS cost_usd DOUBLE;
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS cache_read_tokens BIGINT;
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS cache_write_tokens BIGINT;

-- Issue 15: what `rapport generate` estimated before a run's first call (stages/estimate.py),
-- for `stats` to set beside what the run took (view estimate_vs_actual). Judging not included.
CREATE TABLE IF NOT EXISTS estimates (
    run_id VARCHAR PRIMARY KEY,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd DOUBLE,                 -- with prompt caching as modelled; NULL: a price unknown
    cost_uncached_usd DOUBLE,
    wall_s DOUBLE,                   -- NULL: no rate limit nor latency known
    created_at TIMESTAMPTZ NOT NULL
);

-- Issue 15: judging through the providers' batch APIs (`rapport judge --batch`). Every batch
-- submitted, so that a killed run re-attaches to the open ones instead of paying twice, and
-- every item in it: which conversation, criteria and transcript window it asks about, and its
-- outcome once the batch has ended (the reply is validated as a live reply is, when used).
CREATE TABLE IF NOT EXISTS judge_batches (
    batch_id VARCHAR PRIMARY KEY,    -- the provider's id
    judge_id VARCHAR NOT NULL,
    provider VARCHAR NOT NULL,       -- openai | anthropic
    model VARCHAR NOT NULL,
    status VARCHAR NOT NULL,         -- submitted (open) | ended | lost (the provider forgot it)
    items INTEGER NOT NULL,
    succeeded INTEGER,               -- items answered / failed, expired or canceled (once ended)
    failed INTEGER,
    run_id VARCHAR,                  -- the judge run that submitted it
    submitted_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS judge_batch_items (
    batch_id VARCHAR NOT NULL,
    custom_id VARCHAR NOT NULL,      -- deterministic: same question, same id
    judge_id VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL,
    criteria VARCHAR[] NOT NULL,
    window_index INTEGER NOT NULL,   -- 0-based window of the transcript
    attempt INTEGER NOT NULL,        -- 0: first ask; 1: the retry with the problem fed back
    status VARCHAR NOT NULL,         -- pending | answered | failed | expired | canceled
    reply VARCHAR,
    error VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    cost_usd DOUBLE,                 -- at the batch price; NULL: no known price
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, custom_id)
);

-- Issue 16: `rapport generate --shard K/N` plays the scenarios with index % N = K into a file of
-- its own; `rapport merge` joins such files into one corpus, keeping each shard's row here.
CREATE TABLE IF NOT EXISTS shards (
    plan_id VARCHAR NOT NULL,
    shard_index INTEGER NOT NULL,    -- K
    shard_count INTEGER NOT NULL,    -- N
    count INTEGER NOT NULL,          -- the plan's size (every shard's scenarios), the largest asked
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (plan_id, shard_index, shard_count)
);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS shard VARCHAR;  -- K/N of `generate --shard`, else NULL

-- Issue 17: people reading the corpus in `rapport view`. One answer per conversation, reviewer
-- and criterion (a rubric criterion, or `overall` for the reviewer's pass/fail: YES = pass);
-- a re-review replaces the reviewer's earlier answers.
CREATE TABLE IF NOT EXISTS human_verdicts (
    conversation_id VARCHAR NOT NULL,
    reviewer VARCHAR NOT NULL,
    criterion_id VARCHAR NOT NULL,
    answer VARCHAR NOT NULL,         -- YES | NO | NA
    note VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, reviewer, criterion_id)
);

-- `rapport review sample`: the conversations the page walks through, in `position` order. Issue
-- 24: several named queues in one file (schema 4 made `queue` part of the key), each drawn by a
-- strategy and maybe assigned to a reviewer; `reason` says why a conversation is in it.
CREATE TABLE IF NOT EXISTS review_queue (
    queue VARCHAR NOT NULL,          -- --queue NAME (`default` unless named)
    conversation_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    stratum VARCHAR,                 -- the --stratify values it was drawn for
    created_at TIMESTAMPTZ NOT NULL,
    strategy VARCHAR NOT NULL,       -- random | disagreement | borderline
    reviewer VARCHAR,                -- --reviewer NAME the queue is assigned to, else NULL
    reason VARCHAR NOT NULL,         -- why it was drawn (the judges' disagreement, the score, …)
    PRIMARY KEY (queue, conversation_id)
);

-- Issue 22: the user simulator is judged too. Same shapes as `verdicts` and `assessments`,
-- answered against the domain's simulator_rubric.yaml by the same judges.
CREATE TABLE IF NOT EXISTS simulator_verdicts (
    conversation_id VARCHAR NOT NULL,
    judge_id VARCHAR NOT NULL,
    criterion_id VARCHAR NOT NULL,
    answer VARCHAR NOT NULL,         -- YES | NO | NA
    reasoning VARCHAR,
    judge_model VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, judge_id, criterion_id)
);

CREATE TABLE IF NOT EXISTS simulator_assessments (
    conversation_id VARCHAR NOT NULL,
    judge_id VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    passed BOOLEAN NOT NULL,
    safety_failed BOOLEAN NOT NULL,
    pass_threshold DOUBLE NOT NULL,
    category_scores JSON NOT NULL,
    failed_gates VARCHAR[] NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, judge_id)
);

-- Checks of the user's turns without a model, run as turns are stored: one row per check that
-- fired on a user message (`evidence`: the words that made it fire).
CREATE TABLE IF NOT EXISTS simulator_checks (
    conversation_id VARCHAR NOT NULL,
    turn_index INTEGER NOT NULL,
    check_id VARCHAR NOT NULL,       -- copies_assistant | discloses_ai | speaks_as_assistant |
                                     -- over_word_limit | repeats_itself
    evidence VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, turn_index, check_id)
);

-- What a dataset build left out and why (reason: simulator_failed, duplicate, below_min_score,
-- …). A rebuild of the same output replaces that output's rows, in one transaction.
CREATE TABLE IF NOT EXISTS dataset_exclusions (
    conversation_id VARCHAR NOT NULL,
    output VARCHAR NOT NULL,         -- the build's --out folder, resolved
    reason VARCHAR NOT NULL,
    detail VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (output, conversation_id, reason)
);

-- Issue 22: judge failures on the user side (same shape as judge_failures): a criterion of
-- simulator_rubric.yaml a judge could not answer, asked again by the next run.
CREATE TABLE IF NOT EXISTS simulator_judge_failures (
    conversation_id VARCHAR NOT NULL,
    judge_id VARCHAR NOT NULL,
    criterion_id VARCHAR NOT NULL,
    error VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- Issue 22: near-duplicates. The MinHash signature of each side's text (word shingles), kept so
-- a pass over a grown corpus hashes only the conversations it has not seen (stages/dedup.py).
CREATE TABLE IF NOT EXISTS minhash_signatures (
    conversation_id VARCHAR NOT NULL,
    side VARCHAR NOT NULL,           -- assistant | user
    shingle_size INTEGER NOT NULL,   -- words per shingle
    num_perm INTEGER NOT NULL,
    signature BLOB,                  -- num_perm little-endian uint32 hash values; NULL: no words
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, side, shingle_size, num_perm)
);

-- The corpus's near-duplicate clusters per side as `rapport stats --duplicates` last computed
-- them (replaced whole by each pass): only conversations in a cluster of two or more.
CREATE TABLE IF NOT EXISTS duplicate_clusters (
    conversation_id VARCHAR NOT NULL,
    side VARCHAR NOT NULL,           -- assistant | user
    cluster_id VARCHAR NOT NULL,     -- the kept member's conversation_id
    similarity DOUBLE NOT NULL,      -- estimated Jaccard to the kept member (1 for itself)
    threshold DOUBLE NOT NULL,       -- the threshold the clusters were computed for
    shingle_size INTEGER NOT NULL,
    num_perm INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, side)
);

-- Issue 25: on a server whose in-flight cap is learned, a timeout is backpressure (retried as a
-- 429 is); the timeout requests were sent with when it was raised to fit one request (NULL: no
-- timeout known), and the line that said so (NULL: never raised).
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS backpressure_timeouts BIGINT;
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS effective_timeout_s DOUBLE;
ALTER TABLE gateway_stats ADD COLUMN IF NOT EXISTS timeout_notice VARCHAR;
