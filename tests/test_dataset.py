"""Dataset building: slicing, truncation with a real tokenizer, leak-free splits, the written
dataset loading back, examples recorded in DuckDB, and the repetition report."""

from __future__ import annotations

import itertools
import random

import duckdb
import pandas as pd
import pytest
from datasets import load_from_disk

from rapport.config.errors import RapportError
from rapport.judges.repetition import dominated_conversations, repetition_report
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.store.reads import Turn
from rapport.training.dataset_build import DatasetRequest, build_dataset
from rapport.training.slicing import SlicingPolicy, pair_exchanges, slice_points, to_messages
from rapport.training.tiny_tokenizer import build_tokenizer
from rapport.training.truncation import fit_to_budget, tokenizer_counter


def _words(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) for m in messages)


EXCHANGES = [(f"user says {i} " + "u " * i, f"reply {i} " + "a " * i) for i in range(1, 6)]


def test_every_k_slicing_always_ends_with_the_last_exchange():
    assert slice_points("c", 5, SlicingPolicy(kind="every", every=2)) == [2, 4, 5]
    assert slice_points("c", 1, SlicingPolicy(kind="every", every=2)) == [1]


def test_seeded_steps_are_stable_per_conversation():
    policy = SlicingPolicy()
    points = slice_points("conversation-a", 40, policy)
    assert points == slice_points("conversation-a", 40, policy)
    assert points[0] == 3 and points[-1] == 40
    assert all(2 <= b - a <= 5 for a, b in itertools.pairwise(points[:-1]))


def test_examples_are_openai_messages_with_the_system_prompt_first():
    messages = to_messages("You coach.", EXCHANGES[:2])
    assert messages == [
        {"role": "system", "content": "You coach."},
        {"role": "user", "content": EXCHANGES[0][0]},
        {"role": "assistant", "content": EXCHANGES[0][1]},
        {"role": "user", "content": EXCHANGES[1][0]},
        {"role": "assistant", "content": EXCHANGES[1][1]},
    ]
    turns = [Turn("user", "a"), Turn("assistant", "b"), Turn("user", "c")]
    assert pair_exchanges(turns) == [("a", "b")]


def test_truncation_drops_the_oldest_whole_exchanges():
    # word counts: system 2, exchange i has (3 + i) + (2 + i) words: 4 → 13, 5 → 15
    fitted = fit_to_budget("You coach.", EXCHANGES, _words, max_tokens=2 + 13 + 15)
    assert fitted is not None
    messages, first, tokens = fitted
    assert first == 3 and tokens == 30  # exchanges 4 and 5 kept whole, the system prompt too
    assert messages == to_messages("You coach.", EXCHANGES[3:])
    assert fit_to_budget("You coach.", EXCHANGES, _words, max_tokens=1000)[1] == 0


def test_an_example_that_cannot_fit_is_dropped():
    assert fit_to_budget("You coach.", EXCHANGES, _words, max_tokens=10) is None
    assert fit_to_budget("You coach.", EXCHANGES, _words, max_tokens=30, min_exchanges=3) is None


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    texts = [f"{u} {a}" for u, a in EXCHANGES] * 20 + ["I feel stuck at work and at home."] * 20
    return build_tokenizer(texts, tmp_path_factory.mktemp("tok") / "tokenizer")


def test_truncation_is_measured_with_the_real_tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    count = tokenizer_counter(tokenizer)
    full = count(to_messages("You coach.", EXCHANGES))
    fitted = fit_to_budget("You coach.", EXCHANGES, count, max_tokens=full - 1)
    assert fitted is not None
    messages, first, tokens = fitted
    assert first >= 1 and tokens <= full - 1
    assert tokens == len(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])
    assert tokens > _words(messages)  # real subword tokens, not a word estimate


@pytest.fixture(scope="module")
def judged_corpus(tmp_path_factory):
    db = tmp_path_factory.mktemp("dataset") / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=80, backend="simulated", seed=3))
    judge_corpus(JudgeRequest(db=db, judges=("simulated:quality=0.95",)))
    return db


@pytest.mark.slow
def test_dataset_splits_by_conversation_and_loads_back(
    judged_corpus, tmp_path, tokenizer_dir, therapy
):
    out = tmp_path / "hf"
    summary = build_dataset(
        DatasetRequest(db=judged_corpus, out=out, tokenizer=str(tokenizer_dir), max_tokens=4096,
                       fractions=__import__("rapport.training.splits", fromlist=["SplitFractions"]).SplitFractions(0.2, 0.2))
    )  # fmt: skip
    loaded = load_from_disk(str(out))
    assert {split: len(loaded[split]) for split in loaded} == summary.examples
    owners = {split: set(loaded[split]["conversation_id"]) for split in loaded}
    assert not (owners["train"] & owners["validation"]) and not (owners["train"] & owners["test"])
    assert not (owners["validation"] & owners["test"])
    example = loaded["train"][0]
    assert example["messages"][0]["role"] == "system"
    assert [m["role"] for m in example["messages"][1:]] == ["user", "assistant"] * (
        (len(example["messages"]) - 1) // 2
    )
    assert max(max(loaded[s]["num_tokens"], default=0) for s in loaded) <= 4096
    card = (out / "README.md").read_text()
    for fragment in (
        "## Provenance",
        "simulated",
        "pass rule",
        "## Token statistics",
        f"tokenizer: {tokenizer_dir.name};",  # the folder's name, not where it lies
        therapy.info.disclaimer[:60],
    ):
        assert fragment in card
    assert str(tokenizer_dir) not in card and str(judged_corpus) not in card
    with duckdb.connect(str(judged_corpus), read_only=True) as conn:
        fed = conn.execute(
            "SELECT count(DISTINCT conversation_id), count(*) FROM examples WHERE output_dir = ?",
            [str(out)],
        ).fetchone()
        passing = conn.execute(
            "SELECT count(*) FROM conversation_judgement WHERE passed"
        ).fetchone()[0]
    assert fed == (summary.conversations, sum(summary.examples.values())) and fed[0] == passing


def test_parquet_and_jsonl_outputs(judged_corpus, tmp_path):
    parquet = tmp_path / "pq"
    build_dataset(
        DatasetRequest(db=judged_corpus, out=parquet, output_format="parquet", max_tokens=2000)
    )
    frame = pd.read_parquet(parquet / "train.parquet")
    assert len(frame) > 0 and frame["num_tokens"].max() <= 2000
    jsonl = tmp_path / "jsonl"
    build_dataset(DatasetRequest(db=judged_corpus, out=jsonl, output_format="jsonl"))
    assert (jsonl / "train.jsonl").read_text().count("\n") == len(
        pd.read_json(jsonl / "train.jsonl", lines=True)
    )


def test_held_out_scenarios_never_reach_training(judged_corpus, tmp_path):
    with duckdb.connect(str(judged_corpus)) as conn:
        held = conn.execute(
            "SELECT conversation_id FROM conversation_judgement WHERE passed ORDER BY 1 LIMIT 3"
        ).fetchall()
        conn.execute(
            "UPDATE scenarios SET held_out = true WHERE scenario_id IN (SELECT unnest(?))",
            [[h[0] for h in held]],
        )
    try:
        out = tmp_path / "held"
        build_dataset(DatasetRequest(db=judged_corpus, out=out))
        ids = set(load_from_disk(str(out))["train"]["conversation_id"])
        assert not ids & {h[0] for h in held}
    finally:
        with duckdb.connect(str(judged_corpus)) as conn:
            conn.execute("UPDATE scenarios SET held_out = false")


def test_push_to_hub_needs_a_token(judged_corpus, tmp_path):
    with pytest.raises(RapportError, match="HF_TOKEN"):
        build_dataset(
            DatasetRequest(db=judged_corpus, out=tmp_path / "x", push_to_hub="me/data"), environ={}
        )


def test_a_phrase_planted_in_30_percent_of_conversations_tops_the_report():
    rng = random.Random(5)
    vocabulary = [f"word{i}" for i in range(3000)]
    transcripts = {}
    for index in range(100):
        messages = []
        for _ in range(4):
            messages.append(Turn("user", " ".join(rng.choices(vocabulary, k=20))))
            reply = " ".join(rng.choices(vocabulary, k=20))
            if index % 10 < 3:
                reply += " and honestly that is not nothing at all"
            messages.append(Turn("assistant", reply))
        transcripts[f"c{index}"] = messages
    report = repetition_report(transcripts, n=3)
    top = report.overused["assistant"][0]
    assert top.ngram in {
        "that is not",
        "is not nothing",
        "not nothing at",
        "and honestly that",
        "honestly that is",
        "nothing at all",
    }
    assert top.share == pytest.approx(0.30) and top.vs_baseline > 5
    distinct = report.distinct
    assert 0 < distinct["distinct_1"] < distinct["distinct_2"] <= distinct["distinct_3"] <= 1
    dominated = dominated_conversations(transcripts, report, min_share=0.25, max_dominated=0.5)
    assert dominated == {f"c{i}" for i in range(100) if i % 10 < 3}


@pytest.mark.slow
def test_dataset_and_repetition_from_the_command_line(judged_corpus, tmp_path):
    from tests.conftest import rapport

    out = tmp_path / "cli"
    built = rapport(
        "dataset",
        "build",
        "--db",
        str(judged_corpus),
        "--out",
        str(out),
        "--format",
        "jsonl",
        "--slice-every",
        "3",
    )
    assert built.returncode == 0, built.stderr
    assert (
        "examples" in built.stdout
        and (out / "train.jsonl").exists()
        and (out / "README.md").exists()
    )
    refused = rapport(
        "dataset",
        "build",
        "--db",
        str(judged_corpus),
        "--out",
        str(tmp_path / "hub"),
        "--push-to-hub",
        "me/data",
        env={"HF_TOKEN": ""},
    )
    assert (
        refused.returncode == 2
        and "HF_TOKEN" in refused.stderr
        and "Traceback" not in refused.stderr
    )
    report = rapport("stats", "--db", str(judged_corpus), "--repetition")
    assert (
        report.returncode == 0
        and "Most over-used 3-grams" in report.stdout
        and "distinct_2" in report.stdout
    )
