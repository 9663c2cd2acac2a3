"""Every tunable default in one place, with a name (never a literal buried in a loop)."""

from __future__ import annotations

WEIGHT_SUM_TOLERANCE = 1e-6

# Bounds of command-line numbers, checked before anything runs (one line when out of range).
MAX_SEED = 2**63 - 1  # plan seeds are stored as DuckDB BIGINT
MAX_TRAIN_SEED = 2**32 - 1  # numpy, under transformers' set_seed, takes 32-bit seeds
MAX_COUNT = 1_000_000  # conversations in one plan: its scenarios are stored before any is run
MAX_TURNS = 1_000  # exchanges in one conversation
MAX_ACTIVE = 100_000  # conversations alive at once
MAX_PORT = 65_535  # TCP

# Scheduler and store.
DEFAULT_MAX_ACTIVE = 256
DEFAULT_SEED = 0
STORE_FLUSH_ROWS = 5_000
STORE_FLUSH_INTERVAL_S = 0.5
STORE_QUEUE_EVENTS = 10_000
STORE_LOCK_RETRY_S = 30.0
PLAN_CHUNK_SCENARIOS = 2_000
GATEWAY_STATS_INTERVAL_S = 5.0

# Backends.
DEFAULT_MAX_TOKENS = 512
DEFAULT_LOCAL_MAX_TOKENS = 128
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 5
# A gateway whose first calls all fail with the same non-retryable error (bad key, unknown model,
# missing command) stops the run after this many, before the rest of the plan is tried.
FAIL_FAST_AFTER_CALLS = 5
RETRY_BACKOFF_MIN_S = 0.5
RETRY_BACKOFF_MAX_S = 30.0
CHARS_PER_TOKEN_ESTIMATE = 4.0
# A budgeted call reserves its worst case before it starts: its prompt at this many characters
# per token (English runs at about 4; 2 also covers most other scripts), plus max_tokens.
WORST_CASE_CHARS_PER_TOKEN = 2.0
WORST_CASE_MARGIN = 1.25  # then the most tokens per character reported so far, plus a quarter
# Our buckets hold half a second: arrival jitter then fits in the provider's (larger) bucket.
RATE_BURST_SECONDS = 0.5
DEFAULT_LLAMACPP_CONTEXT = 4096
DEFAULT_LLAMACPP_IN_FLIGHT = 1
# llama-cpp-python's prefix cache for the actors' states (~23 KB per token with SmolLM2-135M:
# a 1,235-token prompt's state is 28.5 MB). Turns from exchange 2 on took 1.5 s instead of
# 10.4 s (6 exchanges, 2 threads, bench/llamacpp_prefix_cache.py, bench/results); 0: off.
DEFAULT_LLAMACPP_PREFIX_CACHE_MB = 512
# The embedded SmolLM2 ends its turns where a person would (issue 23 §5). Left to a fixed budget
# it writes until cut; so, unless `max_tokens` is set, a llama.cpp reply's budget follows the
# words the turn may use: the persona's word limit for the user simulator, the coach's limit
# (twice the user's message: "never more than twice as long") for the assistant, at least
# LOCAL_REPLY_MIN_WORDS, at LOCAL_TOKENS_PER_WORD (SmolLM2's tokenizer: ~1.3 on English) with
# a margin. A reply cut there is asked once more with twice the budget (TRUNCATION_RETRY_FACTOR).
LOCAL_TOKENS_PER_WORD = 1.4
LOCAL_REPLY_MARGIN = 1.25
LOCAL_REPLY_MIN_WORDS = 40
COACH_REPLY_WORD_FACTOR = 2.0
# Near the end of that budget the model is nudged to end its turn: from this share of
# max_tokens on, right after each sentence end, the end-of-turn token's logit gains a bonus
# that grows by LOCAL_END_NUDGE_PER_TOKEN per token (engine/backends/llamacpp_backend.py,
# EndOfTurnNudge), so it stops at the first sentence end near its budget instead of being cut
# (left alone, SmolLM2 wrote 526-token user turns and a 2,225-token coach turn). 0: off.
LOCAL_END_NUDGE_FROM = 0.8
LOCAL_END_NUDGE_PER_TOKEN = 1.0
# Stop sequences for the chat template's turn markers (ChatML, SmolLM2's template): a reply ends
# where the model would open or close a turn, never running on into one it invents.
LLAMACPP_STOP = ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
# A reply cut by the length limit is asked once more with this many times the token budget.
TRUNCATION_RETRY_FACTOR = 2
COMPLETION_AVERAGE_WEIGHT = 0.1  # moving average of completion tokens, for TPM estimates
# A gateway whose every request has been answered 429 for this long, with no success at all,
# stops the run (it resumes next time); until then 429s are retried with no attempt cap.
NO_SUCCESS_STOP_S = 600.0

# Limits learned when none is configured or stated (engine/adaptive_limits.py).
LEARNED_IN_FLIGHT_START = 1  # start as a one-slot server would need, then double per window
LEARNED_IN_FLIGHT_MAX = 1024
LATENCY_WINDOW_MIN_SAMPLES = 3  # a window is max(this, in-flight cap) answers
LATENCY_TOLERANCE = 1.5  # a window's median latency over the baseline by this much is queueing
LATENCY_CLEAR_CONGESTION = 2.0  # ... twice in a row (noise is not), or once by this much
# Per window, divided by the cap: the baseline follows slowly growing prompts, but slower than
# the queue that one more request per window adds (or the cap would creep up with it).
LATENCY_BASELINE_DRIFT = 0.1
IN_FLIGHT_PROBE_WINDOWS = 2  # after congestion, flat windows before one more request in flight
IN_FLIGHT_DECREASE = 0.7  # multiplicative decrease on queueing, a 429 or a timeout
RATE_DECREASE = 0.9  # on a 429: this share of the rate the provider really served
RATE_STEP_PER_SUCCESS = 1.0  # requests/min added per success while the rate binds (≈1.7 %/s)
# ... times 1 + this × the distance from the rate that met the limit (as a share of it): quick
# far from it, careful near it (TCP CUBIC's shape).
RATE_PROBE_GAIN = 20.0
RATE_MEASURE_WINDOW_S = 2.0  # successes counted over this long to know the rate served
LEARNED_RPM_MIN = 6.0
# The cap grows or probes only while p95 of the last answers × (cap + 1) / cap fits the timeout.
FIT_LATENCY_SAMPLES = 20
FIT_LATENCY_QUANTILE = 0.95
# A timeout shorter than one request's service time (engine/service_time.py) is raised to this
# many times the longest reply measured alone (one request behind an abandoned one still fits,
# and so does a machine whose other jobs slow it: at 2×, a 22 s reply measured alone later ran
# past 44 s when another job started) or, after a timeout of a request alone on the
# server, to this many times that timeout; never above TIMEOUT_RAISE_MAX × the configured one
# (at 4×, 48 s for timeout_s 12, the case still timed out on a busy 2-core machine: a
# cold 1,400-token prefill took 52–72 s, a 512-token retry of a cut reply 72 s).
TIMEOUT_FIT_MARGIN = 3.0
TIMEOUT_RAISE_ON_TIMEOUT = 2.0
TIMEOUT_RAISE_MAX = 8.0
SERVICE_TIME_SAMPLES = 32  # replies served alone, fitted as overhead + s/token × tokens
SERVICE_FIT_MIN_SPREAD_TOKENS = 16  # below it, replies are of one length: time per token
DECREASE_COOLDOWN_S = 1.0  # one decrease per episode: 429s in flight together are one signal
# Sporadic 429s ("overloaded", at any rate) never take the rate below this share of the best
# rate served; that best halves every RATE_CEILING_HALF_LIFE_S, so a limit that really dropped
# is followed down.
RATE_FLOOR_SHARE = 0.5
RATE_CEILING_HALF_LIFE_S = 60.0

# `rapport sql`: rows fetched from DuckDB at a time, and shown in a table unless --limit says.
SQL_FETCH_ROWS = 10_000
SQL_TABLE_ROWS = 10_000

# Progress display.
PROGRESS_REFRESH_PER_S = 4
RATE_WINDOW_S = 60.0

# Seeds sent to providers (llama.cpp takes 32-bit seeds, OpenAI any integer): kept below 2**31.
SAMPLING_SEED_RANGE = 2**31

# Judging through gateways with an in-flight cap (local models): conversations judged at once per
# request slot. More would only interleave them, so none finishes (and is stored) until the end.
JUDGE_CONVERSATIONS_PER_SLOT = 2
# Completed conversations waiting for each judge. Beyond it, generation waits for judging (memory
# stays bounded when judges are slower than generation).
JUDGE_BACKLOG_CONVERSATIONS = 1_000

# Redaction: environment values shorter than this are not treated as secrets (removing a short
# value such as "1" from every text would wreck it; real keys are far longer).
MIN_SECRET_CHARS = 8

# Ray workers (rapport.cluster) and the global budget they lease from (engine/leases.py).
MAX_WORKERS = 1_024
LEASE_S = 0.1  # a lease is this many seconds of the rate (at least what one call needs)
LEASE_TTL_S = 1.0  # what is left of a lease after this is void: no hoarding across a pause
LEASE_TIMEOUT_S = 60.0  # a budget keeper silent this long counts as unreachable (static share)
WORKER_PULL_WAIT_S = 0.2  # a pull returns at once with what is ready, else after this
WORKER_IDLE_POLL_S = 0.02  # a worker with nothing in flight polls the job stream this often
WORKER_QUEUED_PER_SLOT = 2  # jobs handed to a worker ahead, per conversation it plays at once
WORKER_REPORT_EVENTS = 2_000  # store events a worker sends back per pull at most
WORKER_CLOSE_S = 2.0  # workers closing their clients at the end, before they are killed
CLUSTER_PROBE_TIMEOUT_S = 5.0  # a --ray HOST:PORT that does not answer within this is refused

# Model-free checks of the user simulator's turns (judges/simulator_checks.py), run as turns are
# stored. A user turn copies the assistant when it shares a span of this many words in a row
# with the assistant's previous turn (a short quote is normal; a sentence or more is an echo).
COPY_SPAN_WORDS = 10
# A user turn breaks its persona's word limit when it is longer than this many times the limit.
WORD_LIMIT_BREAK_FACTOR = 2.0
# A user turn repeats an earlier one of the same conversation when their word 3-shingles overlap
# this much (Jaccard); turns shorter than REPEAT_MIN_WORDS ("ok", "thanks") may recur freely.
REPEAT_SHINGLE_WORDS = 3
REPEAT_SIMILARITY = 0.8
REPEAT_MIN_WORDS = 8
# Turns whose lengths (in characters) differ more than this ratio are not compared: so unequal
# a pair cannot reach REPEAT_SIMILARITY, and skipping them keeps long conversations cheap.
REPEAT_LENGTH_RATIO = 0.6
# Before comparing words, a turn is probed for in each earlier one: this many slices of its
# text, this long; an earlier turn missing more than this share of them is no repeat of it
# (one that only names the same topic holds some, a repeat nearly all).
REPEAT_PROBES = 6
REPEAT_PROBE_CHARS = 10
REPEAT_PROBE_MISSES = 0.25
# The simulated user, in character, writes a turn again (from the same seeded draws) when it
# would repeat one of its earlier turns, at most this many times.
SIMULATED_USER_REDRAWS = 5
CHECK_EVIDENCE_CHARS = 120  # the evidence stored with a check: the words that made it fire
# Near-duplicates (`rapport stats --duplicates`, `rapport dataset build --dedup`): MinHash
# (datasketch) over word shingles of each side's text, LSH for the candidate pairs.
DEDUP_THRESHOLD = 0.8  # estimated Jaccard at or above which two sides are near-duplicates
DEDUP_SHINGLE_WORDS = 5  # words per shingle
DEDUP_NUM_PERM = 128  # MinHash permutations: the estimate's standard error is ≤ 0.045
DEDUP_SEED = 1  # the permutations' seed: fixed, so stored signatures stay comparable
DEDUP_BATCH_CONVERSATIONS = 2_000  # conversations read from DuckDB and hashed at a time
DEDUP_WORKERS = 2  # processes hashing batches at once (at most the CPUs; one batch: none)
# LSH bands chosen for few missed pairs (false negatives weigh 0.95): a candidate only costs a
# comparison of signatures. With the default threshold a pair at 0.85 is a candidate 99.4 % of
# the time (datasketch's even weights: 69 %).
DEDUP_LSH_WEIGHTS = (0.05, 0.95)
DEDUP_LSH_MAX_THRESHOLD = 0.95  # LSH needs two bands or more: above this, candidates at 0.95
DEDUP_SHARED_TEXT_CHARS = 80  # the start of a cluster's shared text shown by stats
DEDUP_CLUSTERS_SHOWN = 50  # largest clusters per side that `rapport stats --duplicates` lists
# `generate --until-passing N`
UNTIL_PASSING_DRAW_FACTOR = 10  # --count left out: at most this many scenarios per passing one
UNTIL_PASSING_REFRESH_S = 0.25  # how often the run rereads where its conversations stand
UNTIL_PASSING_REFRESH_FACTOR = 5  # …at least this many times what the last reread took
UNTIL_PASSING_MIN_JUDGED = 5  # judged in a stratum before its own yield is trusted (estimate)
UNTIL_PASSING_DEFERRED_MAX = 1_000  # scenarios of one stratum waiting for room; more are skipped
