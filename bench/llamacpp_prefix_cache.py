"""Does llama-cpp-python's prefix cache (LlamaCppConfig.prefix_cache_mb) shorten turns?

Both actors of one conversation share one in-process model, so each call's prompt starts with
the other actor's system prompt: llama-cpp-python's own reuse (the last prompt's KV state only)
finds no common prefix and evaluates the whole prompt every turn. With the RAM cache each
actor's state is restored instead. This plays the prompts of a conversation with the embedded
SmolLM2 as the actors build them (persona system prompt and per-exchange instructions for the
user simulator, the assistant prompt for the assistant), with fixed turns so both modes see the
same prompts, and a short reply budget so prompt evaluation is what is measured; cache off and
on, interleaved per round.

    PYTHONPATH=$PWD python -m rapport.bench.llamacpp_prefix_cache --exchanges 6 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio

from rapport.agents.prompts import assistant_prompt, instruction_message, user_simulator_prompt
from rapport.config.loader import load_domain
from rapport.engine.backends.llamacpp_backend import LlamaCppBackend, embedded_model_path
from rapport.engine.plan import sample_scenario
from rapport.engine.types import ChatMessage, CompletionParams

USER_TURN = (
    "I have been sleeping badly for weeks and it is starting to affect my work. My manager "
    "noticed I was late twice and I am worried about what comes next, honestly."
)
ASSISTANT_TURN = (
    "That sounds exhausting, and it makes sense that you are worried. Can you tell me a bit "
    "more about what your evenings look like, and when the trouble sleeping began?"
)


async def play(exchanges: int, cache_mb: int, threads: int, reply_tokens: int) -> list[float]:
    """Seconds per call, in call order (user simulator, assistant, per exchange)."""
    domain = load_domain(None)
    scenario = sample_scenario(domain, "bench", 7, 0)
    backend = LlamaCppBackend(
        model_path=str(embedded_model_path()),
        n_ctx=4096,
        threads=threads,
        prefix_cache_mb=cache_mb,
    )
    key = "bench" if cache_mb else None
    user = [ChatMessage("system", user_simulator_prompt(domain, scenario))]
    assistant = [ChatMessage("system", assistant_prompt(domain))]
    seconds = []
    try:
        for exchange in range(1, exchanges + 1):
            final = exchange == exchanges
            user.append(instruction_message(domain, exchange, exchanges, final))
            for messages, role in ((user, "user"), (assistant, "assistant")):
                if role == "assistant":
                    messages.append(ChatMessage("user", f"{USER_TURN} ({exchange})"))
                params = CompletionParams(
                    max_tokens=reply_tokens,
                    temperature=0.0,
                    seed=1,
                    cache_key=f"{key}:{role}" if key else None,
                )
                started = time.perf_counter()
                await backend.complete(list(messages), params)
                seconds.append(time.perf_counter() - started)
                print(f"  {role} {exchange}: {seconds[-1]:.2f} s", flush=True)
            user += [
                ChatMessage("assistant", f"{USER_TURN} ({exchange})"),
                ChatMessage("user", f"{ASSISTANT_TURN} ({exchange})"),
            ]
            assistant.append(ChatMessage("assistant", f"{ASSISTANT_TURN} ({exchange})"))
    finally:
        await backend.aclose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exchanges", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-mb", type=int, default=512)
    parser.add_argument("--reply-tokens", type=int, default=8)
    args = parser.parse_args()
    runs: dict[str, list[list[float]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode, mb in (("off", 0), ("on", args.cache_mb)):
            calls = anyio.run(play, args.exchanges, mb, args.threads, args.reply_tokens)
            runs[mode].append(calls)
            print(f"{mode}: " + " ".join(f"{s:.2f}" for s in calls), flush=True)
    for mode, rounds in runs.items():
        per_call = [statistics.mean(values) for values in zip(*rounds, strict=True)]
        later = per_call[2:]  # from exchange 2 on, where a cache can hold a prefix
        mean = statistics.mean(per_call)
        print(
            f"cache {mode}: total {sum(per_call):.1f} s, mean turn {mean:.2f} s,"
            f" from exchange 2 {statistics.mean(later):.2f} s"
        )


if __name__ == "__main__":
    main()
