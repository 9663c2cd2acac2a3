"""Repetition and diversity of a corpus: the phrases each role over-uses across conversations
(the seed's data said "that's not nothing" far too often), distinct-n, opening variety, and
which conversations are dominated by over-used phrases."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from rapport.store.query import QueryResult
from rapport.store.reads import Turn

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOPWORD_TEXT = (
    "a an and are as at be but by for from had has have he her his i if in is it its me my "
    "not of on or our so that the their them then there they this to too was we were what "
    "when which who will with you your"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
OPENER_WORDS = 3

Transcripts = Mapping[str, Sequence[Turn]]


class NgramUse(msgspec.Struct, frozen=True):
    ngram: str
    conversations: int
    share: float  # of conversations using it at least once
    vs_baseline: float  # share / the median share of all n-grams of that role
    occurrences: int


class RepetitionReport(msgspec.Struct, frozen=True):
    conversations: int
    ngram_size: int
    overused: dict[str, list[NgramUse]]  # role -> most over-used n-grams
    distinct: dict[str, float]  # assistant distinct-1/2/3
    opener_variety: float  # distinct openers / assistant turns
    top_openers: list[tuple[str, float]]


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Iterable[str]:
    for index in range(len(tokens) - n + 1):
        gram = tokens[index : index + n]
        if not all(word in STOPWORDS for word in gram):
            yield " ".join(gram)


def _role_usage(transcripts: Transcripts, role: str, n: int) -> tuple[Counter[str], Counter[str]]:
    per_conversation: Counter[str] = Counter()
    occurrences: Counter[str] = Counter()
    for messages in transcripts.values():
        seen: set[str] = set()
        for turn in messages:
            if turn.role == role:
                grams = list(ngrams(words(turn.content), n))
                occurrences.update(grams)
                seen.update(grams)
        per_conversation.update(seen)
    return per_conversation, occurrences


def repetition_report(transcripts: Transcripts, n: int = 3, top: int = 15) -> RepetitionReport:
    total = max(1, len(transcripts))
    overused: dict[str, list[NgramUse]] = {}
    for role in ("assistant", "user"):
        per_conversation, occurrences = _role_usage(transcripts, role, n)
        # The baseline: how many conversations the typical n-gram of this role appears in.
        shares = [count / total for count in per_conversation.values()]
        baseline = statistics.median(shares) if shares else 1 / total
        overused[role] = [
            NgramUse(gram, count, count / total, (count / total) / baseline, occurrences[gram])
            for gram, count in per_conversation.most_common(top)
        ]
    replies = [
        t.content for messages in transcripts.values() for t in messages if t.role == "assistant"
    ]
    distinct: dict[str, float] = {}
    for size in (1, 2, 3):
        grams = [g for reply in replies for g in _all_ngrams(words(reply), size)]
        distinct[f"distinct_{size}"] = len(set(grams)) / len(grams) if grams else 0.0
    openers = Counter(" ".join(words(reply)[:OPENER_WORDS]) for reply in replies)
    return RepetitionReport(
        conversations=len(transcripts),
        ngram_size=n,
        overused=overused,
        distinct=distinct,
        opener_variety=len(openers) / len(replies) if replies else 0.0,
        top_openers=[(opener, count / len(replies)) for opener, count in openers.most_common(5)],
    )


def _all_ngrams(tokens: Sequence[str], n: int) -> list[str]:
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def dominated_conversations(
    transcripts: Transcripts, report: RepetitionReport, min_share: float, max_dominated: float
) -> set[str]:
    """Conversations in which more than `max_dominated` of the assistant's turns contain an
    assistant n-gram used in at least `min_share` of all conversations."""
    flagged_grams = {u.ngram for u in report.overused.get("assistant", []) if u.share >= min_share}
    if not flagged_grams:
        return set()
    dominated = set()
    for cid, messages in transcripts.items():
        replies = [turn.content for turn in messages if turn.role == "assistant"]
        hits = sum(
            any(g in flagged_grams for g in ngrams(words(reply), report.ngram_size))
            for reply in replies
        )
        if replies and hits / len(replies) > max_dominated:
            dominated.add(cid)
    return dominated


def describe(report: RepetitionReport) -> list[tuple[str, QueryResult]]:
    """Titled tables for `rapport stats --repetition` and the report."""
    sections = []
    for role, uses in report.overused.items():
        title = f"Most over-used {report.ngram_size}-grams: {role} ({report.conversations} conv.)"
        rows = tuple(
            (u.ngram, u.conversations, round(u.share, 3), round(u.vs_baseline, 1), u.occurrences)
            for u in uses
        )
        columns = ("ngram", "conversations", "share", "x_baseline", "occurrences")
        sections.append((title, QueryResult(columns, rows)))
    diversity = [(name, round(value, 4)) for name, value in report.distinct.items()]
    diversity.append(("opener_variety", round(report.opener_variety, 4)))
    sections.append(("Assistant diversity", QueryResult(("measure", "value"), tuple(diversity))))
    openers = tuple((opener, round(share, 3)) for opener, share in report.top_openers)
    sections.append(("Most common assistant openers", QueryResult(("opener", "share"), openers)))
    return sections
