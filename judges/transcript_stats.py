"""Deterministic facts about a transcript that a judge should not have to count itself:
reply-length ratios, replies ending in a question, shared openers. Computed in code and given
to the judge with the transcript."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec

from rapport.store.reads import Turn

OPENER_WORDS = 3


class TranscriptStats(msgspec.Struct, frozen=True):
    exchanges: int
    mean_length_ratio: float  # assistant words / user words, per exchange
    max_length_ratio: float
    share_over_twice_user_length: float
    share_ending_in_question: float
    most_common_opener: str
    share_with_most_common_opener: float

    def describe(self) -> str:
        return "\n".join(
            [
                f"- exchanges: {self.exchanges}",
                f"- reply length / user message length: mean {self.mean_length_ratio:.2f}, "
                f"max {self.max_length_ratio:.2f}, "
                f"{self.share_over_twice_user_length:.0%} of replies over 2x",
                f"- replies ending in a question: {self.share_ending_in_question:.0%}",
                f'- most common opening words: "{self.most_common_opener}" '
                f"({self.share_with_most_common_opener:.0%} of replies)",
            ]
        )


def _words(text: str) -> list[str]:
    return text.split()


def _opener(text: str) -> str:
    words = [w.strip(".,!?;:—-\"'").lower() for w in _words(text)[:OPENER_WORDS]]
    return " ".join(w for w in words if w)


def transcript_stats(messages: Sequence[Turn]) -> TranscriptStats:
    """`messages` in turn order, roles `user` / `assistant`."""
    ratios: list[float] = []
    replies: list[str] = []
    last_user = ""
    for turn in messages:
        if turn.role == "user":
            last_user = turn.content
        elif turn.role == "assistant":
            replies.append(turn.content)
            ratios.append(len(_words(turn.content)) / max(1, len(_words(last_user))))
    if not replies:
        return TranscriptStats(0, 0.0, 0.0, 0.0, 0.0, "", 0.0)
    openers = Counter(_opener(reply) for reply in replies)
    opener, opener_count = openers.most_common(1)[0]
    return TranscriptStats(
        exchanges=len(replies),
        mean_length_ratio=sum(ratios) / len(ratios),
        max_length_ratio=max(ratios),
        share_over_twice_user_length=sum(r > 2.0 for r in ratios) / len(ratios),
        share_ending_in_question=sum(r.rstrip().endswith("?") for r in replies) / len(replies),
        most_common_opener=opener,
        share_with_most_common_opener=opener_count / len(replies),
    )
