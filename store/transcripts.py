"""The finish reasons of a reply cut by the token budget, as SQL, for the reads that count or
leave out truncated replies."""

from __future__ import annotations

from rapport.engine.types import TRUNCATED_FINISH_REASONS

# The finish reasons of a reply cut by the token budget, as a SQL list.
TRUNCATED_SQL = ", ".join(f"'{reason}'" for reason in sorted(TRUNCATED_FINISH_REASONS))
