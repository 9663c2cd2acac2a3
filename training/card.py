"""The dataset card (README.md): Hub metadata, provenance, counts, scores and token statistics."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from rapport.store.dataset_source import SourceConversation
from rapport.store.simulator_failures import FlawRealisation

# The Hub's size categories, by upper bound of the example count.
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)
LARGEST_SIZE_CATEGORY = "n>1B"
# Build settings holding paths: the card names the file, never where it lies on the builder's disk.
PATH_SETTINGS = ("db", "out", "tokenizer")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def size_category(examples: int) -> str:
    return next(
        (name for bound, name in SIZE_CATEGORIES if examples < bound), LARGEST_SIZE_CATEGORY
    )


def front_matter(
    *,
    license: str,
    pretty_name: str,
    summary_counts: Mapping[str, int],
    data_files: Mapping[str, str],
) -> str:
    """The card's YAML metadata, written by huggingface_hub so the Hub reads it as intended;
    `data_files` maps each written split to its files (a glob relative to the dataset root)."""
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        language=["en"],
        license=license,
        pretty_name=pretty_name,
        size_categories=[size_category(sum(summary_counts.values()))],
        task_categories=["text-generation"],
        tags=["synthetic", "multi-turn", "rapport"],
        configs=[
            {
                "config_name": "default",
                "data_files": [
                    {"split": split, "path": pattern} for split, pattern in data_files.items()
                ],
            }
        ],
        dataset_info={
            "splits": [
                {"name": split, "num_examples": summary_counts[split]} for split in data_files
            ]
        },
    )
    return f"---\n{data.to_yaml()}\n---"


def published_settings(request: msgspec.Struct) -> dict[str, object]:
    """The build settings as the card shows them: paths reduced to their last part."""
    settings = msgspec.structs.asdict(request)
    for key in PATH_SETTINGS:
        if settings.get(key) is not None:
            settings[key] = Path(str(settings[key])).name
    return settings


class UserSide(msgspec.Struct, frozen=True):
    """The user simulator's side of the passing conversations, as the card states it."""

    failed: int = 0  # its rubric failed (a gate or the pass rule)
    checked: int = 0  # a model-free check fired on one of its turns
    either: int = 0  # conversations with either (each counted once)
    by_check: dict[str, int] = {}  # check id -> conversations it fired on
    kept_failures: bool = False  # --keep-simulator-failures
    flaws: tuple[FlawRealisation, ...] = ()  # of the kept conversations


def _user_side_lines(side: UserSide) -> list[str]:
    """How many conversations were dropped (or kept) because their user side failed, and
    whether the kept ones show the flaws the plan gave their users."""
    checks = ", ".join(f"{check} {n}" for check, n in side.by_check.items()) or "none"
    fate = (
        "kept anyway (--keep-simulator-failures)"
        if side.kept_failures
        else "dropped (recorded in dataset_exclusions)"
    )
    lines = [
        "## The user side",
        "",
        "The user simulator is checked too: judged against the domain's simulator rubric, and "
        "checked without a model as each turn is stored (copying the assistant, saying it is an "
        "AI, speaking as the assistant, breaking its word limit, repeating itself).",
        "",
        f"- conversations whose user side failed: {side.either}, {fate}",
        f"- its rubric failed (a gate or the pass rule): {side.failed}",
        f"- a model-free check fired: {side.checked} (by check: {checks})",
        "",
        "Planned flaws of the kept conversations (shown: most of a conversation's judges found "
        "the flaw in the user's turns):",
        "",
    ]
    rows = [
        (
            f.flaw,
            f.conversations,
            f.judged,
            f"{f.shown} ({f.shown / f.judged:.0%})" if f.judged else "not judged",
        )
        for f in side.flaws
    ]
    lines.append(_table(["flaw", "conversations kept", "judged", "shown"], rows))
    return lines


def _cut_replies_line(count: int, kept: bool) -> str:
    """How many examples had an assistant reply cut by its token budget, and their fate."""
    fate = "kept (--keep-truncated)" if kept else "left out"
    return (
        f"Examples with an assistant reply cut by its token budget (finish reason `length`): "
        f"{count}, {fate}."
    )


def _dedup_line(threshold: object, duplicates: int, candidates: int) -> str:
    """How near-duplicates were handled (`--dedup`)."""
    if threshold is None:
        return "- near-duplicates: not removed (no --dedup)"
    return (
        f"- near-duplicates: {duplicates} of {candidates} conversations left out (--dedup "
        f"{threshold}: MinHash over word shingles of each side; one conversation kept per "
        "cluster on either side, the highest score, then the lowest id)"
    )


def _human_use(request: msgspec.Struct) -> str:
    """How the build used people's reviews (`--human-overrides`, `--reviewed-only`)."""
    overrides = getattr(request, "human_overrides", False)
    used = "people's pass/fail " + ("overrides" if overrides else "does not override")
    reviewed_only = "; only reviewed conversations kept"
    return (
        used + " the judges'" + (reviewed_only if getattr(request, "reviewed_only", False) else "")
    )


def dataset_card(
    *,
    request: msgspec.Struct,
    license: str,
    data_files: Mapping[str, str],
    summary_counts: Mapping[str, int],
    sources: Sequence[SourceConversation],
    dropped: int,
    token_counts: Sequence[int],
    tokenizer: str,
    provenance: Mapping[str, object],
    disclaimers: Sequence[str],
    cut_replies: int = 0,
    kept: int | None = None,
    user_side: UserSide | None = None,
    duplicates: int = 0,
) -> str:
    scores = [s.mean_score for s in sources]
    bins: dict[str, int] = {}
    for score in scores:
        key = f"{min(int(score * 10), 9) / 10:.1f}"
        bins[key] = bins.get(key, 0) + 1
    runs = provenance["runs"]
    judges = provenance["judges"]
    total = sum(summary_counts.values())
    side = user_side or UserSide()
    kept = len(sources) - dropped if kept is None else kept
    user_dropped = 0 if side.kept_failures else side.either
    settings = published_settings(request)
    domains = ", ".join(provenance["domains"])  # type: ignore[arg-type]
    lines = [
        front_matter(
            license=license,
            pretty_name=f"Rapport synthetic conversations ({domains})",
            summary_counts=summary_counts,
            data_files=data_files,
        ),
        "",
        "# Rapport synthetic multi-turn dataset",
        "",
        *(f"> {text}" for text in disclaimers),
        "",
        "Generated by Rapport: simulated conversations between a user simulator and an "
        "assistant, judged against a rubric; only passing conversations are kept, sliced into "
        "examples that end at assistant turns (OpenAI `messages` format, the trained model's "
        "system prompt first), truncated from the oldest exchanges to fit the token budget.",
        "",
        "## Provenance",
        "",
        f"- domains: {domains}",
        f"- pass rule across judges: {provenance['pass_rule']}",
        f"- conversations judged: {provenance['judged']}, passed: {provenance['passed']}, "
        f"kept: {kept} (dropped as repetitive: {dropped}; as their user side failed: "
        f"{user_dropped}; as near-duplicates: {duplicates})",
        _dedup_line(settings.get("dedup"), duplicates, kept + duplicates),
        f"- reviewed by people: {provenance.get('reviewed', 0)}, passed by them: "
        f"{provenance.get('reviewed_passed', 0)}; {_human_use(request)}",
        "",
        "Generation runs:",
        "",
        _table(["run", "user simulator", "assistant"], runs),  # type: ignore[arg-type]
        "",
        "Judges:",
        "",
        _table(["judge", "backend and model"], judges),  # type: ignore[arg-type]
        "",
        *_user_side_lines(side),
        "",
        "## Examples",
        "",
        _table(["split", "examples"], [*summary_counts.items(), ("total", total)]),
        "",
        "Splits are assigned by conversation (never by slice), seeded; scenarios held out for "
        "evaluation are excluded.",
        "",
        _cut_replies_line(cut_replies, bool(settings.get("keep_truncated"))),
        "",
        "## Token statistics",
        "",
        f"- tokenizer: {settings['tokenizer'] or tokenizer}; "
        f"budget: {settings['max_tokens']} tokens per example",
        f"- mean {statistics.fmean(token_counts) if token_counts else 0:.0f}, "
        f"median {statistics.median(token_counts) if token_counts else 0:.0f}, "
        f"max {max(token_counts, default=0)}",
        "",
        "## Score distribution (mean judge score of the kept conversations)",
        "",
        _table(["score from", "conversations"], sorted(bins.items())),
        "",
        "## Build settings",
        "",
        "```json",
        msgspec.json.format(msgspec.json.encode(settings, enc_hook=str)).decode(),
        "```",
        "",
    ]
    return "\n".join(lines)
