"""`rapport generate --estimate`: what a run would cost, before any call and without calling a
model (nothing is written either: a database that does not exist is not created).

Every call still to make is laid out as the run would make it: the prompts are rendered by the
run's own actors (`rapport.agents`, whatever their layout), the history grows by the plan's
target lengths (each scenario's `target_turns`, from what is stored when a conversation was
started), and each reply is as long as the database's corpus measured per role, else as the
domain says: the persona's word limit for the user simulator, `max_tokens` (an upper bound) for
the assistant. Tokens are counted at CHARS_PER_TOKEN_ESTIMATE characters each. Conversations
are assumed to reach their target (a goodbye ends some earlier) and judging is not included.

Caching (`cache: true`) is modelled per provider, each call against the previous prompt of the
same conversation and role: OpenAI reads the shared prefix from its cache once the prompt
reaches OPENAI_CACHE_MIN_TOKENS, in OPENAI_CACHE_STEP_TOKENS steps, at `cache_read`; Anthropic
reads the previous prompt's prefix at `cache_read` and writes the new suffix at `cache_write`,
for prompts of at least ANTHROPIC_CACHE_MIN_TOKENS. Other providers cache nothing.

Wall time is the slowest gateway at its configured limits (rpm, tpm, input/output tpm) and, with
latencies measured in the corpus, at `max_active` conversations and `max_in_flight` calls at
once; with neither known it is not given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import duckdb
import msgspec

from rapport.agents.actors import Assistant, UserSimulator
from rapport.agents.prompts import assistant_prompt
from rapport.config.backend_settings import BackendConfig
from rapport.config.constants import CHARS_PER_TOKEN_ESTIMATE
from rapport.config.domain import Domain
from rapport.config.loader import load_domain
from rapport.config.prices import PriceTable, load_prices, usage_cost
from rapport.config.run import Price, RunConfig
from rapport.config.scenario import Scenario
from rapport.config.shards import WHOLE_PLAN, Shard
from rapport.engine.factory import ROLES, gateway_key, limits_of
from rapport.engine.plan import plan_id_for, sample_scenario
from rapport.engine.types import ChatMessage
from rapport.store.database import connect
from rapport.store.estimates import save_estimate
from rapport.store.plans import SCENARIO_COLUMNS, ScenarioDecoder
from rapport.store.reads import Turn, transcripts
from rapport.store.rows import utc_now

T = TypeVar("T")
Reader = Callable[[Callable[[duckdb.DuckDBPyConnection], T]], T]

ESTIMATE_SAMPLE = 400  # conversations laid out at most; the rest are scaled from them
MEASURED_MIN_MESSAGES = 10  # a role's replies in the corpus before its mean length is used
TOKENS_PER_WORD = 1.33  # English, for the user simulator's word limit
OPENAI_CACHE_MIN_TOKENS = 1024
OPENAI_CACHE_STEP_TOKENS = 128
ANTHROPIC_CACHE_MIN_TOKENS = 1024
FREE_PROVIDERS = frozenset({"simulated", "null", "llamacpp"})  # no bill


class RoleEstimate(msgspec.Struct, frozen=True):
    """One role's share of the run."""

    role: str
    backend: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None: the model has no known price
    cost_uncached_usd: float | None
    reply_tokens: float  # per reply, as estimated
    reply_source: str  # see `_reply_source`


class Estimate(msgspec.Struct, frozen=True):
    """What the calls still to make would take (a resumed run: what remains)."""

    plan_id: str
    conversations: int  # still to play (or finish)
    laid_out: int  # of them, laid out call by call (the rest are scaled from these)
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None
    cost_uncached_usd: float | None
    wall_s: float | None  # None: no limit nor latency known
    wall_note: str  # what the wall time rests on, or why there is none
    roles: tuple[RoleEstimate, ...]


class _Calls(msgspec.Struct):
    """Running sums of one role's calls."""

    requests: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0
    cost: float = 0.0
    cost_uncached: float = 0.0


class _Corpus(msgspec.Struct, frozen=True):
    """What the database already holds for the plan."""

    todo: int  # conversations still to play or finish
    laid_out: list[int]  # the scenario indices of those laid out call by call
    started: dict[int, tuple[Scenario, tuple[Turn, ...]]]  # laid out, with stored turns
    reply_tokens: dict[str, float]  # measured mean per role (enough replies only)
    latency_s: dict[str, float]


def estimate_run(
    settings: RunConfig,
    count: int,
    db: Path | None = None,
    *,
    reader: Reader | None = None,
    domain: Domain | None = None,
    shard: Shard = WHOLE_PLAN,
    indices: range | None = None,
) -> Estimate:
    """The estimate of `rapport generate` with these settings. The database is read through
    `reader` when given (a run's own), else opened read-only when `db` exists. `indices`: the
    plan's scenarios to lay out instead of this shard's below `count` (--until-passing)."""
    if domain is None:
        domain = load_domain(Path(settings.domain) if settings.domain else None)
    plan_id = plan_id_for(domain, settings.seed, settings.turns)
    owned = indices if indices is not None else shard.indices(0, count)
    corpus = _read_corpus(settings, plan_id, owned, db, reader)
    laid_out = corpus.laid_out
    scale = corpus.todo / len(laid_out) if laid_out else 0.0
    prices = load_prices(settings.prices)
    backends = {role: getattr(settings.backends, role) for role in ROLES}
    calls = {role: _Calls() for role in ROLES}
    pricing = {role: _price(backends[role], prices) for role in ROLES}
    system = assistant_prompt(domain)
    for index in laid_out:
        scenario, stored = corpus.started.get(index) or (
            sample_scenario(domain, plan_id, settings.seed, index, settings.turns),
            (),
        )
        reply = {
            role: _reply_tokens(role, backends[role], scenario, corpus.reply_tokens)
            for role in ROLES
        }
        actors = _actors(domain, scenario, backends)
        prompts = _conversation_prompts(actors, stored, system, reply)
        for role, role_prompts in prompts.items():
            _add_calls(
                calls[role], role_prompts, reply[role], backends[role], pricing[role], settings
            )
    sources = {role: _reply_source(role, corpus.reply_tokens) for role in ROLES}
    roles = tuple(
        _role_estimate(role, backends[role], calls[role], scale, sources[role], pricing[role])
        for role in ROLES
    )
    wall_s, note = _wall_time(settings, backends, roles, corpus.latency_s, corpus.todo)
    costs = [r.cost_usd for r in roles]
    uncached = [r.cost_uncached_usd for r in roles]
    return Estimate(
        plan_id=plan_id,
        conversations=corpus.todo,
        laid_out=len(laid_out),
        requests=sum(r.requests for r in roles),
        input_tokens=sum(r.input_tokens for r in roles),
        output_tokens=sum(r.output_tokens for r in roles),
        cache_read_tokens=sum(r.cache_read_tokens for r in roles),
        cache_write_tokens=sum(r.cache_write_tokens for r in roles),
        cost_usd=None if None in costs else sum(c for c in costs if c is not None),
        cost_uncached_usd=None if None in uncached else sum(c for c in uncached if c is not None),
        wall_s=wall_s,
        wall_note=note,
        roles=roles,
    )


def record_estimate(conn: duckdb.DuckDBPyConnection, run_id: str, estimate: Estimate) -> None:
    """Store a run's estimate as it starts (`estimates`)."""
    save_estimate(
        conn,
        run_id,
        requests=estimate.requests,
        input_tokens=estimate.input_tokens,
        output_tokens=estimate.output_tokens,
        cost_usd=estimate.cost_usd,
        cost_uncached_usd=estimate.cost_uncached_usd,
        wall_s=estimate.wall_s,
        at=utc_now(),
    )


# ---- the prompts, as the actors render them ---------------------------------------------


def _actors(
    domain: Domain, scenario: Scenario, backends: dict[str, BackendConfig]
) -> tuple[UserSimulator, Assistant]:
    """The run's two actors, for their prompts only (they never speak here): the estimate
    renders each prompt exactly as the run will, whatever its layout."""
    common = {"domain": domain, "scenario": scenario, "run_id": "", "on_turn": _ignore}
    user = UserSimulator(
        gateway=None, settings=backends["user_sim"], sink=None, history=[], **common
    )  # type: ignore[arg-type]
    assistant = Assistant(
        gateway=None, settings=backends["assistant"], sink=None, history=[], **common
    )  # type: ignore[arg-type]
    return user, assistant


def _ignore(_completion: object) -> None:
    return None


def _conversation_prompts(
    actors: tuple[UserSimulator, Assistant],
    stored: Sequence[Turn],
    system: str,
    reply: dict[str, float],
) -> dict[str, list[list[ChatMessage]]]:
    """Every prompt still to send for one conversation, per role, in order; replies not yet
    written are placeholders of the estimated length."""
    user, assistant = actors
    seen_by_user = {"user": "assistant", "assistant": "user"}
    user.history = user_history = [
        ChatMessage(seen_by_user[t.role], t.content)  # type: ignore[arg-type]
        for t in stored
    ]
    assistant.history = assistant_history = [
        ChatMessage(t.role, t.content)  # type: ignore[arg-type]
        for t in stored
    ]
    user_text = "u" * round(reply["user_sim"] * CHARS_PER_TOKEN_ESTIMATE)
    assistant_text = "a" * round(reply["assistant"] * CHARS_PER_TOKEN_ESTIMATE)
    prompts: dict[str, list[list[ChatMessage]]] = {"user_sim": [], "assistant": []}
    target = user.scenario.target_turns
    if stored and stored[-1].role == "user":  # a user turn awaits its reply
        prompts["assistant"].append(assistant.view(system))
        user_history.append(ChatMessage("user", assistant_text))
        assistant_history.append(ChatMessage("assistant", assistant_text))
    for exchange in range(len(user_history) // 2 + 1, target + 1):
        prompts["user_sim"].append(user.prompt(exchange, target, exchange == target))
        user_history.append(ChatMessage("assistant", user_text))
        assistant_history.append(ChatMessage("user", user_text))
        prompts["assistant"].append(assistant.view(system))
        user_history.append(ChatMessage("user", assistant_text))
        assistant_history.append(ChatMessage("assistant", assistant_text))
    return prompts


# ---- tokens, caching and cost --------------------------------------------------------------


def _tokens(chars: int) -> float:
    return chars / CHARS_PER_TOKEN_ESTIMATE


def shared_prefix_chars(before: Sequence[ChatMessage], after: Sequence[ChatMessage]) -> int:
    """Characters of message content two prompts share from their start."""
    shared = 0
    for old, new in zip(before, after, strict=False):
        if old.role != new.role:
            break
        if old.content != new.content:
            return shared + _common_start(old.content, new.content)
        shared += len(old.content)
    return shared


def _common_start(a: str, b: str) -> int:
    """Length of the common start of two strings (by bisection: slices compare in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def cached_tokens(provider: str, prompt: float, shared: float) -> tuple[float, float]:
    """(cache read, cache write) tokens of a call whose prompt shares `shared` tokens with the
    previous prompt of the same conversation and role."""
    if provider == "openai":
        if prompt < OPENAI_CACHE_MIN_TOKENS or shared < OPENAI_CACHE_MIN_TOKENS:
            return 0.0, 0.0
        step = OPENAI_CACHE_STEP_TOKENS
        return OPENAI_CACHE_MIN_TOKENS + (shared - OPENAI_CACHE_MIN_TOKENS) // step * step, 0.0
    if provider == "anthropic":
        if prompt < ANTHROPIC_CACHE_MIN_TOKENS:
            return 0.0, 0.0
        read = shared if shared >= ANTHROPIC_CACHE_MIN_TOKENS else 0.0
        return read, prompt - read
    return 0.0, 0.0


def _price(backend: BackendConfig, prices: PriceTable) -> Price | None:
    """The role's price; free backends cost nothing (a zero price), unknown ones None."""
    if backend.provider in FREE_PROVIDERS:
        return Price(input=0.0, output=0.0)
    model = getattr(backend, "model", "") or ""
    return prices.price_for(model) if model else None


def _add_calls(
    calls: _Calls,
    prompts: list[list[ChatMessage]],
    reply_tokens: float,
    backend: BackendConfig,
    price: Price | None,
    settings: RunConfig,
) -> None:
    previous: list[ChatMessage] | None = None
    for prompt in prompts:
        tokens = _tokens(sum(len(m.content) for m in prompt))
        read = write = 0.0
        if settings.cache and previous is not None:
            shared = _tokens(shared_prefix_chars(previous, prompt))
            read, write = cached_tokens(backend.provider, tokens, shared)
        elif settings.cache and backend.provider == "anthropic":
            read, write = cached_tokens("anthropic", tokens, 0.0)
        calls.requests += 1
        calls.input_tokens += tokens
        calls.output_tokens += reply_tokens
        calls.cache_read += read
        calls.cache_write += write
        if price is not None:
            calls.cost += usage_cost(
                price, tokens, reply_tokens, cache_read_tokens=read, cache_write_tokens=write
            )  # type: ignore[arg-type]  # fractional tokens: a mean
            calls.cost_uncached += usage_cost(price, tokens, reply_tokens)  # type: ignore[arg-type]
        previous = prompt


def _reply_tokens(
    role: str, backend: BackendConfig, scenario: Scenario, measured: dict[str, float]
) -> float:
    """Tokens per reply of a role in one conversation (see `_reply_source`)."""
    if role in measured:
        return measured[role]
    cap = float(backend.resolved_max_tokens())
    if role == "user_sim":
        low, high = scenario.persona.word_limit
        return min(cap, (low + high) / 2 * TOKENS_PER_WORD)
    return cap


def _reply_source(role: str, measured: dict[str, float]) -> str:
    """Where reply lengths come from: the corpus's mean per role when it has enough replies,
    else the persona's word limit (user simulator) or max_tokens, an upper bound (assistant)."""
    if role in measured:
        return "measured in the corpus"
    return "persona word limit" if role == "user_sim" else "max_tokens (upper bound)"


def _role_estimate(
    role: str,
    backend: BackendConfig,
    calls: _Calls,
    scale: float,
    source: str,
    price: Price | None,
) -> RoleEstimate:
    model = getattr(backend, "model", "") or ""
    return RoleEstimate(
        role=role,
        backend=f"{backend.provider}:{model}" if model else backend.provider,
        requests=round(calls.requests * scale),
        input_tokens=round(calls.input_tokens * scale),
        output_tokens=round(calls.output_tokens * scale),
        cache_read_tokens=round(calls.cache_read * scale),
        cache_write_tokens=round(calls.cache_write * scale),
        cost_usd=None if price is None else calls.cost * scale,
        cost_uncached_usd=None if price is None else calls.cost_uncached * scale,
        reply_tokens=calls.output_tokens / calls.requests if calls.requests else 0.0,
        reply_source=source,
    )


# ---- wall time -------------------------------------------------------------------------------


def _wall_time(
    settings: RunConfig,
    backends: dict[str, BackendConfig],
    roles: tuple[RoleEstimate, ...],
    latency_s: dict[str, float],
    conversations: int,
) -> tuple[float | None, str]:
    """The slowest gateway at its limits, and what that rests on."""
    if not conversations:
        return 0.0, "nothing left to do"
    by_role = {r.role: r for r in roles}
    groups: dict[tuple[object, ...], list[str]] = {}
    for role in ROLES:
        groups.setdefault(gateway_key(backends[role]), []).append(role)
    bounds: list[float] = []
    notes: list[str] = []
    unknown: list[str] = []
    for members in groups.values():
        limits = limits_of(backends[members[0]])
        shown = f"{by_role[members[0]].backend} ({'+'.join(members)})"
        requests = sum(by_role[r].requests for r in members)
        inputs = sum(by_role[r].input_tokens for r in members)
        outputs = sum(by_role[r].output_tokens for r in members)
        minutes = [
            amount / limit
            for amount, limit in (
                (requests, limits.rpm),
                (inputs + outputs, limits.tpm),
                (inputs, limits.input_tpm),
                (outputs, limits.output_tpm),
            )
            if limit
        ]
        if minutes:
            bounds.append(max(minutes) * 60.0)
            notes.append(f"{shown} at its rate limits")
        known = [latency_s[r] for r in members if r in latency_s]
        if known and len(known) == len(members):
            call_s = sum(latency_s[r] * by_role[r].requests for r in members)
            if limits.max_in_flight:
                bounds.append(call_s / limits.max_in_flight)
            notes.append(f"{shown} at its measured latency")
        elif not minutes:
            unknown.append(shown)
    if latency_s.keys() >= set(ROLES):  # each conversation plays its calls one after another
        per_conversation = sum(latency_s[r.role] * r.requests for r in roles) / max(
            1, conversations
        )
        waves = math.ceil(conversations / settings.max_active)
        bounds.append(per_conversation * waves)
    if not bounds:
        return None, "unknown: no rate limit configured and no latency measured for " + ", ".join(
            unknown
        )
    note = "; ".join(notes) or "measured latency"
    if unknown:
        note += "; no limit known for " + ", ".join(unknown)
    return max(bounds), note


# ---- what the database already holds ----------------------------------------------------------


def _sample(todo: list[int]) -> list[int]:
    """At most ESTIMATE_SAMPLE of the conversations to do, spread evenly over the plan."""
    step = max(1, math.ceil(len(todo) / ESTIMATE_SAMPLE))
    return todo[::step]


def _read_corpus(
    settings: RunConfig, plan_id: str, owned: range, db: Path | None, reader: Reader | None
) -> _Corpus:
    """What is left to play of the scenarios this run owns (`owned`: all of the plan's below
    `count`, or one shard's)."""

    def read(conn: duckdb.DuckDBPyConnection) -> _Corpus:
        return _corpus(conn, settings, plan_id, owned)

    if reader is not None:
        return reader(read)
    if db is None or not db.exists():
        return _Corpus(len(owned), _sample(list(owned)), {}, {}, {})
    with closing(connect(db, read_only=True)) as conn:
        return read(conn)


def _corpus(
    conn: duckdb.DuckDBPyConnection, settings: RunConfig, plan_id: str, owned: range
) -> _Corpus:
    done = ("complete",) if settings.retry_failed else ("complete", "failed")
    statuses = dict(
        conn.execute(
            "SELECT scenario_index, status FROM conversations "
            "WHERE plan_id = ? AND scenario_index < ?",
            [plan_id, owned.stop],
        ).fetchall()
    )
    todo = [index for index in owned if statuses.get(index) not in done]
    laid_out = _sample(todo)
    started_ids = [i for i in laid_out if statuses.get(i, "pending") != "pending"]
    started_rows = conn.execute(
        f"SELECT {SCENARIO_COLUMNS} FROM scenarios s "
        "WHERE s.plan_id = ? AND list_contains(?, s.scenario_index)",
        [plan_id, started_ids],
    ).fetchall()
    decoder = ScenarioDecoder()
    scenarios = [decoder.scenario(plan_id, row) for row in started_rows]
    stored = transcripts(conn, [s.scenario_id for s in scenarios]) if scenarios else {}
    started = {s.index: (s, tuple(stored.get(s.scenario_id, ()))) for s in scenarios}
    measured = conn.execute(
        """
        SELECT m.role, avg(m.completion_tokens), avg(m.latency_ms) / 1000.0, count(*)
        FROM messages m JOIN conversations c USING (conversation_id)
        WHERE c.plan_id = ? AND m.completion_tokens IS NOT NULL
        GROUP BY m.role
        """,
        [plan_id],
    ).fetchall()
    as_role = {"user": "user_sim", "assistant": "assistant"}
    enough = [row for row in measured if row[3] >= MEASURED_MIN_MESSAGES]
    return _Corpus(
        todo=len(todo),
        laid_out=laid_out,
        started=started,
        reply_tokens={as_role[role]: float(tokens) for role, tokens, _, _ in enough},
        latency_s={as_role[role]: float(s) for role, _, s, _ in enough if s is not None},
    )
