"""Fitting an example into the token budget by dropping its oldest exchanges — whole
exchanges, never part of a message, the system prompt always kept — measured with the base
model's real tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rapport.training.slicing import Exchange, to_messages

TokenCounter = Callable[[list[dict[str, str]]], int]


def tokenizer_counter(tokenizer: object) -> TokenCounter:
    """Counts tokens as training will see them: through the chat template when the tokenizer
    has one, else the contents encoded one by one."""

    def count(messages: list[dict[str, str]]) -> int:
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, tokenize=True)  # type: ignore[attr-defined]
            if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            return len(ids)
        encode = tokenizer.encode  # type: ignore[attr-defined]
        return sum(len(encode(m["content"], add_special_tokens=False)) for m in messages)

    return count


def fit_to_budget(
    system_prompt: str,
    exchanges: Sequence[Exchange],
    count_tokens: TokenCounter,
    max_tokens: int,
    min_exchanges: int = 1,
) -> tuple[list[dict[str, str]], int, int] | None:
    """(messages, index of the first exchange kept, tokens) for the longest run of most recent
    exchanges that fits; None when fewer than `min_exchanges` fit.

    Keeping fewer exchanges never costs more tokens, so the cut is found by binary search:
    a handful of tokenizations even for a 100-exchange conversation.
    """

    def tokens_from(first: int) -> int:
        return count_tokens(to_messages(system_prompt, exchanges[first:]))

    last_allowed = len(exchanges) - min_exchanges
    if last_allowed < 0 or tokens_from(last_allowed) > max_tokens:
        return None
    low, high = 0, last_allowed  # the answer is in [low, high]; `high` fits
    while low < high:
        middle = (low + high) // 2
        if tokens_from(middle) <= max_tokens:
            high = middle
        else:
            low = middle + 1
    return to_messages(system_prompt, exchanges[low:]), low, tokens_from(low)
