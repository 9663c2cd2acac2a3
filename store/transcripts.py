"""The finish reasons of a reply cut by the token budget, as SQL, for the reads that count or
leave out truncated replies."""

from __future__ import annotations

# Finish reasons of a reply cut by its token budget (OpenAI and llama.cpp; Anthropic): stored
# with each message, read here, and set by the engine's backends (engine.types).
TRUNCATED_FINISH_REASONS = frozenset({"length", "max_tokens"})
# The finish reasons of a reply cut by the token budget, as a SQL list.
TRUNCATED_SQL = ", ".join(f"'{reason}'" for reason in sorted(TRUNCATED_FINISH_REASONS))
