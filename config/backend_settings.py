"""One backend's settings, as a tagged union: `provider:` picks the Struct, and each Struct has
only the fields its provider reads (a misplaced key is an unknown key, not silently ignored).
A backend left without `provider:` runs the embedded model in process (`llamacpp`).

What every backend shares is the gateway's: rate limits, the in-flight cap, retries and the
sampling settings the actors send. Adding a provider: a Struct here (in `BackendConfig`), a
builder in engine/factory.py's registry, and, if it has a short form, a spec in backend_spec."""

from __future__ import annotations

import math
import typing
from typing import Annotated, ClassVar, Union

import msgspec

from rapport.config import constants
from rapport.config.urls import url_problem

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
DEFAULT_PROVIDER = "llamacpp"


class BackendBase(msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag_field="provider"):
    """The gateway's settings, shared by every provider. API keys are never here."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    input_tpm: PositiveInt | None = None  # input and output tokens kept apart (Anthropic's)
    output_tpm: PositiveInt | None = None
    max_tokens: PositiveInt | None = None  # None: the provider's default (resolved_max_tokens)
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = constants.DEFAULT_TEMPERATURE
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = constants.DEFAULT_MAX_RETRIES
    backoff_min_s: PositiveFloat = constants.RETRY_BACKOFF_MIN_S
    backoff_max_s: PositiveFloat = constants.RETRY_BACKOFF_MAX_S
    max_in_flight: PositiveInt | None = None  # None: learned from latency (if no rate is known)
    # 429s are retried with no cap until the endpoint has had no success for this long
    no_success_stop_s: PositiveFloat = constants.NO_SUCCESS_STOP_S

    # Read by config.decoding: a mapping with no `provider:` decodes as this one.
    default_tag: ClassVar[str] = DEFAULT_PROVIDER
    # The fields that, with the provider, name one endpoint (and so one set of limits).
    endpoint_fields: ClassVar[tuple[str, ...]] = ()
    # Learn limits nobody stated (from 429s and latency): real providers only.
    adaptive: ClassVar[bool] = True
    default_max_tokens: ClassVar[int] = constants.DEFAULT_MAX_TOKENS
    default_in_flight: ClassVar[int | None] = None

    @property
    def provider(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]

    def endpoint(self) -> tuple[object, ...]:
        """What identifies one endpoint: roles with equal endpoints share one gateway."""
        return (self.provider, *(getattr(self, name) for name in self.endpoint_fields))

    def resolved_max_tokens(self) -> int:
        """The reply budget: as configured, else the provider's default."""
        return self.max_tokens if self.max_tokens is not None else self.default_max_tokens

    def reply_budget(self, words: float | None = None) -> int:
        """The budget of a conversation turn that may use about `words` words: as configured,
        else the provider's default (a backend that rambles to any budget, the embedded
        model, sizes it by the words instead: LlamaCppConfig)."""
        return self.resolved_max_tokens()


class Replica(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One more endpoint of a hosted backend: a server replica (its `base_url`) or another key
    of the same provider (its `api_key_env`); what it leaves out is the backend's own. Its
    limits and in-flight cap are its own (the backend's apply to all replicas together)."""

    base_url: str | None = None
    api_key_env: str | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    input_tpm: PositiveInt | None = None
    output_tpm: PositiveInt | None = None
    max_in_flight: PositiveInt | None = None

    def __post_init__(self) -> None:
        problem = url_problem(self.base_url) if self.base_url is not None else None
        if problem:
            raise ValueError(f"base_url: {problem}")


class _Hosted(BackendBase):
    """An API over HTTP: a model name, an optional base URL and the key's variable; or several
    endpoints (`replicas`), each call sent to the least-loaded healthy one."""

    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: PositiveFloat = constants.DEFAULT_TIMEOUT_S
    replicas: tuple[Replica, ...] = ()

    endpoint_fields: ClassVar[tuple[str, ...]] = ("model", "base_url", "replicas")

    def __post_init__(self) -> None:
        problem = url_problem(self.base_url) if self.base_url is not None else None
        if problem:
            raise ValueError(f"base_url: {problem}")
        names = [
            (r.base_url or self.base_url, r.api_key_env or self.api_key_env) for r in self.replicas
        ]
        if len(set(names)) != len(names):
            raise ValueError("replicas: two replicas name the same base_url and api_key_env")


class OpenAIConfig(_Hosted, tag="openai"):
    """OpenAI or any OpenAI-compatible server (vLLM, Ollama, a llama.cpp server: `base_url`)."""


class AnthropicConfig(_Hosted, tag="anthropic"):
    """Anthropic's messages API (it limits input and output tokens separately: input_tpm,
    output_tpm)."""


class LlamaCppConfig(BackendBase, tag="llamacpp"):
    """A GGUF model in this process (default: the embedded SmolLM2)."""

    model_path: str | None = None
    n_ctx: PositiveInt = constants.DEFAULT_LLAMACPP_CONTEXT
    threads: PositiveInt | None = None
    # llama-cpp-python's prefix cache (LlamaRAMCache) in MB, used when the run config's `cache`
    # is on: each actor's model state is kept (least recently used dropped first) and restored
    # on its next turn, instead of evaluating its whole prompt again. 0: off.
    prefix_cache_mb: Annotated[int, msgspec.Meta(ge=0)] = constants.DEFAULT_LLAMACPP_PREFIX_CACHE_MB

    # The chat template's turn markers: the reply stops there (constants.LLAMACPP_STOP).
    stop: tuple[str, ...] = constants.LLAMACPP_STOP
    # Logit added to the end-of-turn token per token past LOCAL_END_NUDGE_FROM of the budget.
    end_nudge: NonNegativeFloat = constants.LOCAL_END_NUDGE_PER_TOKEN

    endpoint_fields: ClassVar[tuple[str, ...]] = ("model_path",)
    default_max_tokens: ClassVar[int] = constants.DEFAULT_LOCAL_MAX_TOKENS
    default_in_flight: ClassVar[int | None] = constants.DEFAULT_LLAMACPP_IN_FLIGHT

    def reply_budget(self, words: float | None = None) -> int:
        """A small local model writes until it is cut, so its turn's budget is the words the
        turn may use (at least LOCAL_REPLY_MIN_WORDS) in tokens, plus a margin; `max_tokens`,
        when set, wins."""
        if self.max_tokens is not None or words is None:
            return self.resolved_max_tokens()
        words = max(words, constants.LOCAL_REPLY_MIN_WORDS)
        return math.ceil(words * constants.LOCAL_TOKENS_PER_WORD * constants.LOCAL_REPLY_MARGIN)


class CommandConfig(BackendBase, tag="command"):
    """A CLI that reads a prompt on stdin and prints the reply (`command: [claude, -p]`)."""

    command: tuple[str, ...] = ()
    model: str = ""
    timeout_s: PositiveFloat = constants.DEFAULT_TIMEOUT_S

    endpoint_fields: ClassVar[tuple[str, ...]] = ("model", "command")


# The simulated user's per-turn fault shares (SimulatedConfig): together at most 1.
TURN_FAULTS = (
    "user_breaks",
    "user_copies",
    "user_discloses",
    "user_coaches",
    "user_repeats",
    "user_rambles",
)


class SimulatedConfig(BackendBase, tag="simulated"):
    """The offline simulator. Different quality or latency make different "models".

    As the user simulator it can break character on request, to test what catches a broken
    user (engine/backends/simulated_faults.py): `user_breaks` is the share of user turns that
    break it in any of the ways, the finer `user_*` shares one way each (per turn, drawn from
    the turn's seed); `user_ignores_flaw` is the share of conversations whose user never
    shows its planned flaws. All 0 by default."""

    model: str = ""
    latency_ms: NonNegativeFloat = 0.0
    # as assistant, the share of real (not generic) replies; as judge, of YES verdicts
    quality: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.85
    user_breaks: Share = 0.0  # any of the ways below, spread evenly
    user_copies: Share = 0.0  # echoes the assistant's last turn
    user_discloses: Share = 0.0  # says it is an AI, a simulated user, or quotes its instructions
    user_coaches: Share = 0.0  # role reversal: gives the assistant a coach's advice
    user_repeats: Share = 0.0  # repeats one of its earlier turns word for word
    user_rambles: Share = 0.0  # writes more than twice its persona's word limit
    user_ignores_flaw: Share = 0.0  # of conversations: the user never shows its flaws
    # as judge, the quality for conversations whose first topic is of a category (others:
    # `quality`): yields that differ by topic, as `generate --until-passing` must cope with
    topic_quality: dict[str, Annotated[float, msgspec.Meta(ge=0, le=1)]] = {}

    endpoint_fields: ClassVar[tuple[str, ...]] = (
        "model",
        "quality",
        "latency_ms",
        *TURN_FAULTS,
        "user_ignores_flaw",
    )
    adaptive: ClassVar[bool] = False

    def __post_init__(self) -> None:
        total = sum(getattr(self, name) for name in TURN_FAULTS)
        if total > 1 + constants.WEIGHT_SUM_TOLERANCE:
            raise ValueError(
                f"{', '.join(TURN_FAULTS)} are shares of the same user turns: they add up to "
                f"{total:g}, at most 1"
            )


class NullConfig(BackendBase, tag="null"):
    """A fixed reply at once, no text written: the engine's own overhead (benchmarks)."""

    model: str = ""
    reply: Annotated[str, msgspec.Meta(min_length=1)] = "ok"

    endpoint_fields: ClassVar[tuple[str, ...]] = ("model", "reply")
    adaptive: ClassVar[bool] = False


BackendConfig = Union[  # noqa: UP007 (a runtime alias msgspec and isinstance both read)
    LlamaCppConfig, OpenAIConfig, AnthropicConfig, CommandConfig, SimulatedConfig, NullConfig
]
PROVIDERS: dict[str, type[BackendBase]] = {
    cls.__struct_config__.tag: cls for cls in typing.get_args(BackendConfig)
}


# Every key the single flat BackendConfig had, in its order, with its defaults.
_FLAT_DEFAULTS: dict[str, object] = {
    "model": "",
    "base_url": None,
    "api_key_env": None,
    **{name: None for name in ("rpm", "tpm", "max_tokens")},
    "temperature": constants.DEFAULT_TEMPERATURE,
    "timeout_s": constants.DEFAULT_TIMEOUT_S,
    "max_retries": constants.DEFAULT_MAX_RETRIES,
    "backoff_min_s": constants.RETRY_BACKOFF_MIN_S,
    "backoff_max_s": constants.RETRY_BACKOFF_MAX_S,
    "max_in_flight": None,
    "no_success_stop_s": constants.NO_SUCCESS_STOP_S,
    **{name: None for name in ("input_tpm", "output_tpm")},
    "latency_ms": 0.0,
    "quality": 0.85,
    "model_path": None,
    "n_ctx": constants.DEFAULT_LLAMACPP_CONTEXT,
    "threads": None,
    "command": (),
}


def flat_form(settings: BackendBase) -> dict[str, object]:
    """The settings as the one flat Struct encoded them (every provider's keys, in its order):
    ids hashed from a backend's settings (an eval's) stay what they were before the union."""
    own = msgspec.structs.asdict(settings)
    return {"provider": settings.provider, **{k: own.get(k, v) for k, v in _FLAT_DEFAULTS.items()}}
