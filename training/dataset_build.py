"""`rapport dataset build`: passing conversations → sliced, budget-fitted examples in the OpenAI
`messages` format → a Hugging Face dataset (save_to_disk, Parquet or JSONL) with a card, the
examples recorded back in DuckDB."""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from rapport.config.constants import CHARS_PER_TOKEN_ESTIMATE
from rapport.config.errors import RapportError
from rapport.config.secrets import Redactor
from rapport.judges.near_duplicates import ClusterMember, DedupSettings
from rapport.judges.repetition import dominated_conversations, repetition_report
from rapport.stages.dedup import check_threshold, duplicates_among
from rapport.store.database import Database
from rapport.store.dataset_source import (
    ExampleRecord,
    SourceConversation,
    passing_conversations,
    provenance,
    save_examples,
)
from rapport.store.errors import StoreError
from rapport.store.exclusions import ExclusionRow, replace_exclusions
from rapport.store.judgements import plan_domains
from rapport.store.output_folder import check_output_folder, staged_output
from rapport.store.rows import utc_now
from rapport.store.run_secrets import database_redactor
from rapport.store.simulator_failures import (
    SIMULATOR_CHECK,
    SIMULATOR_FAILED,
    FlawRealisation,
    SimulatorFailure,
    flaw_realisation,
    simulator_failures,
)
from rapport.training.card import UserSide, dataset_card
from rapport.training.slicing import SlicingPolicy, pair_exchanges, slice_points
from rapport.training.splits import SPLITS, SplitFractions, split_of
from rapport.training.truncation import TokenCounter, fit_to_budget, tokenizer_counter

OutputFormat = Literal["hf", "parquet", "jsonl"]
# Where each format puts a split's rows, relative to the output folder (the card's data_files).
SPLIT_FILES: dict[str, str] = {
    "hf": "{split}/data-*.arrow",
    "parquet": "{split}.parquet",
    "jsonl": "{split}.jsonl",
}
HUB_SPLIT_FILES = "data/{split}-*"  # where `push_to_hub` puts them
CARD_FILE = "README.md"
# A Hub repo id (owner/name): only such a --tokenizer may come from the local Hub cache.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class DatasetRequest(msgspec.Struct, frozen=True):
    db: Path
    out: Path
    tokenizer: str | None = None  # a local tokenizer folder (the base model's)
    max_tokens: int = 16_384
    output_format: OutputFormat = "hf"
    min_score: float | None = None
    seed: int = 0
    fractions: SplitFractions = SplitFractions()
    slicing: SlicingPolicy = SlicingPolicy()
    min_exchanges: int = 1
    drop_repetitive: float | None = None  # drop conversations with more than this share of
    repetitive_share: float = 0.2  # assistant turns using phrases found in this share of all
    push_to_hub: str | None = None
    overwrite: bool = False  # replace an --out folder that is not this format's previous output
    license: str = "unknown"  # the card's license (a Hub license id)
    keep_truncated: bool = False  # keep examples with an assistant turn cut by its token budget
    human_overrides: bool = False  # a person's pass/fail (rapport view) before the judges'
    reviewed_only: bool = False  # only conversations a person reviewed
    # keep conversations whose user side failed (its rubric, or a model-free check)
    keep_simulator_failures: bool = False
    dedup: float | None = None  # keep one conversation per near-duplicate cluster at this Jaccard


class DatasetSummary(msgspec.Struct, frozen=True):
    conversations: int
    dropped_repetitive: int
    examples: dict[str, int]
    truncated: int
    skipped_too_long: int
    cut_replies: int  # examples with an assistant reply cut by its budget (left out unless kept)
    tokens_mean: float
    tokens_max: int
    tokenizer: str
    out: str
    dropped_simulator_failed: int = 0  # the user side failed its rubric (a gate or the rule)
    dropped_simulator_check: int = 0  # a model-free check fired on a user turn
    kept_simulator_failures: int = 0  # failed, kept by --keep-simulator-failures
    dropped_duplicates: int = 0


def _token_counter(tokenizer: str | None) -> tuple[TokenCounter, str]:
    if tokenizer is None:

        def estimate(messages: list[dict[str, str]]) -> int:
            return round(sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN_ESTIMATE)

        return estimate, f"estimate ({CHARS_PER_TOKEN_ESTIMATE:g} characters per token)"
    return tokenizer_counter(_load_tokenizer(tokenizer)), tokenizer


def _load_tokenizer(tokenizer: str) -> object:
    """A local tokenizer folder (or a Hub repo id already in the local cache), or one line
    saying what is wrong with it."""
    folder = Path(tokenizer)
    shown = f"--tokenizer {tokenizer}"
    if not folder.exists() and not _REPO_ID.fullmatch(tokenizer):
        raise RapportError(f"{shown}: no such folder")
    if folder.exists() and not folder.is_dir():
        raise RapportError(f"{shown}: is a file; give the tokenizer's folder")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            try:
                json.loads((folder / name).read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                raise RapportError(f"{shown}: {name} is not valid JSON: {error}") from None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    except Exception as error:  # tokenizers raises bare Exceptions for malformed files
        if not folder.exists():
            raise RapportError(
                f"{shown}: no such folder, and no tokenizer by that name in the local Hub cache"
            ) from None
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RapportError(
            f"{shown}: cannot load a tokenizer from this folder: "
            f"{type(error).__name__}{': ' + detail if detail else ''}"
        ) from None


def _features():
    from datasets import Features, Value

    return Features(
        {
            "example_id": Value("string"),
            "conversation_id": Value("string"),
            "first_exchange": Value("int32"),
            "end_exchange": Value("int32"),
            "num_tokens": Value("int32"),
            "messages": [{"role": Value("string"), "content": Value("string")}],
        }
    )


class Selection(msgspec.Struct, frozen=True):
    """The examples a request selects from the corpus, and what was left out and why."""

    database: Database
    redactor: Redactor
    sources: list[SourceConversation]
    domains: dict[str, Any]
    dropped: set[str]  # repetitive
    failures: list[SimulatorFailure]
    failed_users: set[str]
    duplicates: list[ClusterMember]
    kept: list[SourceConversation]
    user_side: UserSide
    records: list[ExampleRecord]
    rows: dict[str, list[dict[str, object]]]
    truncated: int
    too_long: int
    cut_replies: int
    tokenizer_label: str


def build_dataset(
    request: DatasetRequest, environ: Mapping[str, str] | None = None
) -> DatasetSummary:
    environ = environ if environ is not None else dict(os.environ)
    token = environ.get("HF_TOKEN", "").strip()
    if request.push_to_hub and not token:
        raise RapportError("--push-to-hub needs HF_TOKEN in the environment (a write token)")
    check_source(request)
    output_kind = f"dataset:{request.output_format}"
    keep = (request.db, *([Path(request.tokenizer)] if request.tokenizer else []))
    check_output_folder(request.out, output_kind, overwrite=request.overwrite, keep=keep)
    selection = select_examples(request, environ)
    database, redactor, sources = selection.database, selection.redactor, selection.sources
    domains, dropped, failures = selection.domains, selection.dropped, selection.failures
    failed_users, duplicates, kept = selection.failed_users, selection.duplicates, selection.kept
    user_side, records, rows = selection.user_side, selection.records, selection.rows
    truncated, too_long = selection.truncated, selection.too_long
    cut_replies = selection.cut_replies
    tokenizer_label = selection.tokenizer_label
    counts = {split: len(rows[split]) for split in SPLITS}
    origin = database.run_sync(provenance)
    disclaimers = sorted({d.info.disclaimer for d in domains.values() if d.info.disclaimer})

    def card(split_files: str) -> str:
        return redactor(  # a database written before redaction may hold an echoed key
            dataset_card(
                request=request,
                license=request.license,
                data_files={s: split_files.format(split=s) for s in SPLITS if counts[s]},
                summary_counts=counts,
                sources=sources,
                dropped=len(dropped),
                kept=len(kept),
                user_side=user_side,
                duplicates=len(duplicates),
                cut_replies=cut_replies,
                token_counts=[r.num_tokens for r in records],
                tokenizer=tokenizer_label,
                provenance=origin,
                disclaimers=disclaimers,
            )
        )

    with staged_output(request.out, output_kind, overwrite=request.overwrite, keep=keep) as staging:
        dataset = _write(rows, request.output_format, staging)
        (staging / CARD_FILE).write_text(card(SPLIT_FILES[request.output_format]), encoding="utf-8")
    database.run_sync(lambda conn: save_examples(conn, records))
    output = str(request.out.resolve())
    now = utc_now()
    exclusions = [
        ExclusionRow(conversation_id, output, "repetitive", None, now)
        for conversation_id in sorted(dropped)
    ]
    if not request.keep_simulator_failures:
        exclusions += [
            ExclusionRow(f.conversation_id, output, f.reason, f.detail, now) for f in failures
        ]
    exclusions += [
        ExclusionRow(
            m.conversation_id,
            output,
            "duplicate",
            f"kept {m.cluster_id} ({m.side} side, similarity {m.similarity:.3f})",
            now,
        )
        for m in duplicates
    ]
    database.run_sync(lambda conn: replace_exclusions(conn, output, exclusions))
    if request.push_to_hub:
        _push(dataset, card(HUB_SPLIT_FILES), request, token)
    tokens = [r.num_tokens for r in records]
    return DatasetSummary(
        conversations=len(kept),
        dropped_repetitive=len(dropped),
        dropped_duplicates=len(duplicates),
        examples={split: len(rows[split]) for split in SPLITS},
        truncated=truncated,
        skipped_too_long=too_long,
        cut_replies=cut_replies,
        tokens_mean=statistics.fmean(tokens) if tokens else 0.0,
        tokens_max=max(tokens, default=0),
        tokenizer=tokenizer_label,
        out=str(request.out),
        dropped_simulator_failed=0 if user_side.kept_failures else user_side.failed,
        dropped_simulator_check=0 if user_side.kept_failures else user_side.checked,
        kept_simulator_failures=len(failed_users) if user_side.kept_failures else 0,
    )


def check_source(request: DatasetRequest) -> None:
    """The database exists and the dedup threshold is one; else one line (BadInput)."""
    if not request.db.exists():
        raise StoreError(f"{request.db}: no such database")
    if request.dedup is not None:
        check_threshold(request.dedup, "--dedup")


def select_examples(request: DatasetRequest, environ: Mapping[str, str]) -> Selection:
    """The passing conversations the request keeps, sliced into examples per split; nothing is
    written but near-duplicate clusters (`dedup`, refreshed as `rapport stats --duplicates`
    does). Raises RapportError when nothing passes."""
    count_tokens, tokenizer_label = _token_counter(request.tokenizer)
    database = Database(request.db)
    database.initialise()
    redactor = database_redactor(request.db, environ)
    sources = [
        _redacted(source, redactor)
        for source in database.run_sync(
            lambda conn: passing_conversations(
                conn,
                request.min_score,
                human_overrides=request.human_overrides,
                reviewed_only=request.reviewed_only,
            )
        )
    ]
    domains = database.run_sync(plan_domains)
    if not sources:
        hint = (
            "review some in `rapport view` first?"
            if request.reviewed_only
            else "run `rapport judge` first?"
        )
        raise RapportError(f"{request.db}: no passing conversations ({hint})")
    transcripts = {s.conversation_id: s.messages for s in sources}
    dropped: set[str] = set()
    if request.drop_repetitive is not None:
        report = repetition_report(transcripts)
        dropped = dominated_conversations(
            transcripts, report, request.repetitive_share, request.drop_repetitive
        )
    failures = database.run_sync(lambda conn: simulator_failures(conn, list(transcripts)))
    failed_users = {f.conversation_id for f in failures}
    left_out = dropped | (set() if request.keep_simulator_failures else failed_users)
    duplicates: list[ClusterMember] = []
    if request.dedup is not None:  # among what the other rules keep: a kept member is kept
        duplicates = duplicates_among(
            request.db,
            [s.conversation_id for s in sources if s.conversation_id not in left_out],
            DedupSettings(threshold=request.dedup),
        )
        left_out |= {m.conversation_id for m in duplicates}
    kept = [s for s in sources if s.conversation_id not in left_out]
    if not kept and failed_users and not request.keep_simulator_failures:
        raise RapportError(
            f"{request.db}: every passing conversation left is one whose user side failed "
            f"({len(failed_users)}: its simulator rubric or a model-free check, see `rapport "
            "stats`); --keep-simulator-failures keeps them"
        )
    kept_ids = [s.conversation_id for s in kept]
    user_side = _user_side(
        failures,
        request.keep_simulator_failures,
        database.run_sync(lambda conn: flaw_realisation(conn, kept_ids)),
    )
    records, rows, truncated, too_long, cut_replies = _examples(
        kept, domains, request, count_tokens
    )
    return Selection(
        database=database, redactor=redactor, sources=sources, domains=domains,
        dropped=dropped, failures=failures, failed_users=failed_users, duplicates=duplicates,
        kept=kept, user_side=user_side, records=records, rows=rows, truncated=truncated,
        too_long=too_long, cut_replies=cut_replies, tokenizer_label=tokenizer_label,
    )  # fmt: skip


def examples_dataset(request: DatasetRequest, environ: Mapping[str, str] | None = None):
    """The examples a build would write, as a `datasets.DatasetDict` in memory: no folder, no
    card, no row of `training_examples` (the Python API's `Corpus.dataset`)."""
    check_source(request)
    selection = select_examples(request, environ if environ is not None else dict(os.environ))
    return _dataset(selection.rows)


def _user_side(
    failures: list[SimulatorFailure], keep: bool, flaws: list[FlawRealisation]
) -> UserSide:
    """The card's figures on the user side: failures by way (judged, checked, per check id)."""
    by_check: dict[str, int] = {}
    for failure in failures:
        for check_id in failure.check_ids:
            by_check[check_id] = by_check.get(check_id, 0) + 1
    return UserSide(
        failed=sum(f.reason == SIMULATOR_FAILED for f in failures),
        checked=sum(f.reason == SIMULATOR_CHECK for f in failures),
        either=len({f.conversation_id for f in failures}),
        by_check=dict(sorted(by_check.items())),
        kept_failures=keep,
        flaws=tuple(flaws),
    )


def _redacted(source: SourceConversation, redactor: Redactor) -> SourceConversation:
    """The transcript redacted (a database written before redaction may hold an echoed key)."""
    messages = tuple(
        msgspec.structs.replace(turn, content=redactor(turn.content)) for turn in source.messages
    )
    return msgspec.structs.replace(source, messages=messages)


def _examples(
    sources: list[SourceConversation],
    domains: Mapping[str, object],
    request: DatasetRequest,
    count_tokens: TokenCounter,
) -> tuple[list[ExampleRecord], dict[str, list[dict[str, object]]], int, int, int]:
    """The examples, and counts: truncated from the oldest turns, too long, and with a cut
    assistant reply (a model trained on those learns to stop mid-sentence)."""
    rows: dict[str, list[dict[str, object]]] = {split: [] for split in SPLITS}
    records: list[ExampleRecord] = []
    truncated = too_long = cut_replies = 0
    now = utc_now()
    for source in sources:
        domain = domains[source.plan_id]
        system_prompt = domain.prompts.system_prompt  # type: ignore[attr-defined]
        exchanges = pair_exchanges(source.messages)
        split = split_of(source.conversation_id, request.seed, request.fractions)
        for point in slice_points(source.conversation_id, len(exchanges), request.slicing):
            fitted = fit_to_budget(
                system_prompt,
                exchanges[:point],
                count_tokens,
                request.max_tokens,
                request.min_exchanges,
            )
            if fitted is None:
                too_long += 1
                continue
            messages, first, tokens = fitted
            if any(first < exchange <= point for exchange in source.truncated_exchanges):
                cut_replies += 1
                if not request.keep_truncated:
                    continue
            truncated += first > 0
            example_id = f"{source.conversation_id}:{point}"
            rows[split].append(
                {
                    "example_id": example_id,
                    "conversation_id": source.conversation_id,
                    "first_exchange": first + 1,
                    "end_exchange": point,
                    "num_tokens": tokens,
                    "messages": messages,
                }
            )
            records.append(
                ExampleRecord(
                    example_id,
                    source.conversation_id,
                    split,
                    first + 1,
                    point,
                    tokens,
                    str(request.out),
                    now,
                )
            )
    return records, rows, truncated, too_long, cut_replies


def _push(dataset, card: str, request: DatasetRequest, token: str) -> None:
    """Upload the splits and the card (its data_files in the Hub's layout); one line on failure."""
    from huggingface_hub import HfApi

    repo = request.push_to_hub
    try:
        dataset.push_to_hub(repo, token=token)
        HfApi(token=token).upload_file(
            path_or_fileobj=card.encode("utf-8"),
            path_in_repo=CARD_FILE,
            repo_id=repo,
            repo_type="dataset",
        )
    except Exception as error:  # network, HTTP and auth errors of several libraries
        detail = " ".join(str(error).split()) or type(error).__name__
        raise RapportError(
            f"--push-to-hub {repo}: upload failed ({type(error).__name__}: {detail}); "
            f"the dataset is written to {request.out}: run the same command again to retry"
        ) from None


def _dataset(rows: Mapping[str, list[dict[str, object]]]):
    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()

    features = _features()
    dataset = DatasetDict(
        {
            split: Dataset.from_dict(
                {name: [row[name] for row in split_rows] for name in features}, features=features
            )
            for split, split_rows in rows.items()
            if split_rows  # an empty split cannot be loaded back by `datasets`: left out
        }
    )
    return dataset


def _write(rows: Mapping[str, list[dict[str, object]]], output_format: OutputFormat, out: Path):
    dataset = _dataset(rows)
    if output_format == "hf":
        dataset.save_to_disk(str(out))
    else:
        for split, part in dataset.items():
            if output_format == "parquet":
                part.to_parquet(str(out / f"{split}.parquet"))
            else:
                part.to_json(str(out / f"{split}.jsonl"), lines=True)
    return dataset
