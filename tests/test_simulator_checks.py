"""The user simulator's turns are checked without a model as they are stored (simulator_checks),
the simulated backend can plant the faults those checks catch (`simulated:user_copies=…`), and
`rapport dataset build` leaves out conversations whose user side failed unless
--keep-simulator-failures, saying so in its card and in dataset_exclusions."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import anyio
import duckdb
import msgspec
import pytest

from rapport.config.constants import WORD_LIMIT_BREAK_FACTOR
from rapport.config.domain import SimulatorChecks
from rapport.config.loader import load_domain
from rapport.config.shards import Shard
from rapport.engine.backends.simulated import SimulatedBackend
from rapport.engine.backends.simulated_faults import UserFaults
from rapport.engine.errors import BackendError
from rapport.engine.gateway import Gateway
from rapport.engine.progress import RunProgress
from rapport.engine.types import ChatMessage, Completion, CompletionParams
from rapport.judges.simulator_checks import check_user_turn
from rapport.stages.generate import GenerateRequest, generate, prepare, simulate, store_plan
from rapport.stages.judge import JudgeRequest, judge_corpus
from tests.conftest import TINY_DOMAIN, error_lines, rapport_in_process

PHRASES = SimulatorChecks()
# Each planted fault and the check that must catch it.
FAULT_CHECKS = {
    "user_copies": "copies_assistant",
    "user_discloses": "discloses_ai",
    "user_coaches": "speaks_as_assistant",
    "user_repeats": "repeats_itself",
    "user_rambles": "over_word_limit",
}
CHECKS_SQL = (
    "SELECT conversation_id, turn_index, check_id, evidence FROM simulator_checks ORDER BY ALL"
)


def _check_ids(text: str, **context) -> list[str]:
    settings = {"previous_reply": None, "earlier_turns": (), "word_limit": 100, **context}
    return [hit.check_id for hit in check_user_turn(text, phrases=PHRASES, **settings)]


# ---- the checks themselves ------------------------------------------------------------------


def test_a_turn_echoing_ten_words_of_the_last_reply_copies_the_assistant():
    reply = "One small experiment: when the worry spikes, write the exact thought down tonight."
    echo = "ok so when the worry spikes, write the exact thought down tonight. fine."
    hits = check_user_turn(
        echo, previous_reply=reply, earlier_turns=(), word_limit=100, phrases=PHRASES
    )
    assert [h.check_id for h in hits] == ["copies_assistant"]
    assert hits[0].evidence.startswith("10 words: when the worry spikes")
    assert (
        _check_ids("you said to write the exact thought down, didn't work", previous_reply=reply)
        == []
    )


def test_saying_it_is_an_ai_or_quoting_its_instructions_discloses():
    hits = check_user_turn(
        "Honestly? As an AI I can’t feel tired.",  # a curly apostrophe, mixed case
        previous_reply=None, earlier_turns=(), word_limit=100, phrases=PHRASES,
    )  # fmt: skip
    assert [(h.check_id, h.evidence) for h in hits] == [("discloses_ai", "as an ai")]
    assert _check_ids("my instructions from the shop were wrong") == ["discloses_ai"]
    assert _check_ids("I said it plainly, I am aimless lately") == []  # whole words only


def test_a_coach_phrase_alone_is_not_role_reversal_but_with_a_question_and_advice_it_is():
    assert _check_ids("have you tried turning it off and on? I did.") == []
    coaching = "It sounds like you are tired. You could rest tonight. What would help you most?"
    assert _check_ids(coaching) == ["speaks_as_assistant"]


def test_more_than_twice_the_word_limit_breaks_it():
    limit = 20
    assert _check_ids("word " * int(WORD_LIMIT_BREAK_FACTOR * limit), word_limit=limit) == []
    over = check_user_turn(
        "word " * (int(WORD_LIMIT_BREAK_FACTOR * limit) + 1),
        previous_reply=None, earlier_turns=(), word_limit=limit, phrases=PHRASES,
    )  # fmt: skip
    assert [(h.check_id, h.evidence) for h in over] == [
        ("over_word_limit", "41 words; the persona's limit is 20")
    ]


def test_a_turn_sent_again_repeats_itself_but_short_replies_may_recur():
    earlier = ["hi, my brakes squeal when I stop on the big hill near home", "ok"]
    again = "Hi, my brakes squeal when I stop on the big hill near home!"
    hits = check_user_turn(
        again, previous_reply=None, earlier_turns=earlier, word_limit=100, phrases=PHRASES
    )
    assert [h.check_id for h in hits] == ["repeats_itself"]
    assert hits[0].evidence.startswith("user turn 1 again: hi my brakes")
    assert _check_ids("ok", earlier_turns=earlier) == []


# ---- planted by the simulated backend, caught as turns are stored ----------------------------


def _generate(db: Path, user_backend: str, count: int = 30, seed: int = 5, domain=TINY_DOMAIN):
    return generate(
        GenerateRequest(
            db=db, count=count, seed=seed, domain=domain,
            user_backend=user_backend, assistant_backend="simulated",
        )
    )  # fmt: skip


def _fired(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return dict(
            conn.execute("SELECT check_id, count(*) FROM simulator_checks GROUP BY 1").fetchall()
        )


@pytest.mark.parametrize("domain", [TINY_DOMAIN, Path("therapy"), Path("customer_support")])
def test_a_simulated_user_in_character_trips_no_check(tmp_path, domain):
    db = tmp_path / "clean.duckdb"
    summary = _generate(db, "simulated", count=40, domain=domain)
    assert summary.complete == 40
    assert _fired(db) == {}


@pytest.mark.parametrize(("option", "check_id"), FAULT_CHECKS.items())
def test_each_planted_fault_is_caught_by_its_check(tmp_path, option, check_id):
    db = tmp_path / "faults.duckdb"
    _generate(db, f"simulated:{option}=0.3")
    fired = _fired(db)
    assert fired.get(check_id, 0) >= 5, fired
    with duckdb.connect(str(db), read_only=True) as conn:
        roles = conn.execute(
            "SELECT DISTINCT m.role, m.backend FROM simulator_checks c "
            "JOIN messages m USING (conversation_id, turn_index)"
        ).fetchall()
    assert roles == [("user", "simulated")]  # on user turns, labelled as the simulator's


def test_user_breaks_spreads_over_every_way_and_the_same_seed_plants_the_same_faults(tmp_path):
    first, second = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    _generate(first, "simulated:user_breaks=0.5", count=40)
    _generate(second, "simulated:user_breaks=0.5", count=40)
    assert set(_fired(first)) == set(FAULT_CHECKS.values())
    turns = "SELECT conversation_id, turn_index, content FROM messages ORDER BY ALL"
    with (
        duckdb.connect(str(first), read_only=True) as a,
        duckdb.connect(str(second), read_only=True) as b,
    ):
        assert a.execute(turns).fetchall() == b.execute(turns).fetchall()
        assert a.execute(CHECKS_SQL).fetchall() == b.execute(CHECKS_SQL).fetchall()


def test_a_user_that_ignores_its_flaws_never_writes_their_examples(tmp_path, tiny):
    def flaw_lines(db: Path) -> int:
        examples = [e.lower() for c in tiny.flaws.categories.values() for f in c.values()
                    for e in f.examples]  # fmt: skip
        with duckdb.connect(str(db), read_only=True) as conn:
            texts = [r[0].lower() for r in conn.execute(
                "SELECT content FROM messages WHERE role = 'user'").fetchall()]  # fmt: skip
        return sum(any(e in text for e in examples) for text in texts)

    ignoring, playing = tmp_path / "ignoring.duckdb", tmp_path / "playing.duckdb"
    _generate(ignoring, "simulated:user_ignores_flaw=1")
    _generate(playing, "simulated")
    assert flaw_lines(playing) > 5
    assert flaw_lines(ignoring) == 0


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("simulated:user_copies=1.5", "user_copies"),
        ("simulated:user_breaks=-0.1", "user_breaks"),
        ("simulated:user_copies=0.6,user_coaches=0.6", "add up to 1.2, at most 1"),
        ("simulated:user_discloses=lots", "user_discloses"),
    ],
)
def test_a_bad_fault_share_is_one_line(tmp_path, spec, says):
    result = rapport_in_process(
        "generate", "--db", str(tmp_path / "x.duckdb"), "--count", "2", "--user-backend", spec
    )
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "x.duckdb").exists()


# ---- resume ---------------------------------------------------------------------------------


class FailingFirst:
    """The simulated backend, except that the listed (scenario index, speaker, exchange) calls
    fail for good: the run stores part of those conversations, the next one resumes them."""

    provider = "simulated"

    def __init__(self, inner: SimulatedBackend, failing: frozenset[tuple[int, str, int]]):
        self.inner, self.failing, self.model = inner, failing, inner.model

    async def complete(
        self, messages: Sequence[ChatMessage], params: CompletionParams
    ) -> Completion:
        hints = params.hints
        assert hints is not None
        if (hints.scenario.index, hints.speaker, hints.exchange) in self.failing:
            raise BackendError("http_400", "refused by the test", retryable=False)
        return await self.inner.complete(messages, params)

    async def aclose(self) -> None:
        return None


def _play(db: Path, failing: frozenset[tuple[int, str, int]]) -> None:
    request = GenerateRequest(db=db, backend="simulated", count=12, turns=6, domain=TINY_DOMAIN)
    generation = prepare(request)
    faults = UserFaults(copies=0.3, repeats=0.3)
    gateway = Gateway(FailingFirst(SimulatedBackend(faults=faults), failing))
    generation = msgspec.structs.replace(
        generation, gateways={"user_sim": gateway, "assistant": gateway}
    )
    store_plan(generation)
    anyio.run(simulate, generation, RunProgress(total=12))


def test_checks_after_a_resume_read_the_stored_history_as_an_uninterrupted_run_does(tmp_path):
    # Conversations 0-5 stop after the user's third turn, 6-11 after the assistant's second.
    failing = frozenset(
        {(i, "assistant", 3) for i in range(6)} | {(i, "user_sim", 3) for i in range(6, 12)}
    )
    resumed, reference = tmp_path / "resumed.duckdb", tmp_path / "reference.duckdb"
    _play(resumed, failing)
    with duckdb.connect(str(resumed), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM messages WHERE turn_index >= 5").fetchone() == (
            0,
        )
    _play(resumed, frozenset())  # the failed conversations are resumed
    _play(reference, frozenset())
    with (
        duckdb.connect(str(resumed), read_only=True) as a,
        duckdb.connect(str(reference), read_only=True) as b,
    ):
        checks = a.execute(CHECKS_SQL).fetchall()
        assert checks == b.execute(CHECKS_SQL).fetchall()
        assert a.execute(
            "SELECT count(*) FROM conversations WHERE status = 'complete'"
        ).fetchone() == (12,)
    # turns written after the resume, checked against turns stored before it
    after_resume = [
        c for c in checks if c[1] >= 4 and c[2] in ("copies_assistant", "repeats_itself")
    ]
    assert len(after_resume) >= 3


# ---- stats ----------------------------------------------------------------------------------


def test_stats_shows_the_checks_of_an_unjudged_corpus(tmp_path):
    db = tmp_path / "unjudged.duckdb"
    _generate(db, "simulated:user_discloses=0.3,user_rambles=0.3")
    result = rapport_in_process("stats", "--db", str(db))
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("Simulator checks", 1)[1].split("Errors by kind", 1)[0]
    with duckdb.connect(str(db), read_only=True) as conn:
        counts = conn.execute(
            "SELECT check_id, count(*), count(DISTINCT conversation_id) FROM simulator_checks "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert conn.execute("SELECT count(*) FROM assessments").fetchone() == (0,)
    assert {"discloses_ai", "over_word_limit"} <= {c[0] for c in counts}
    for check_id, turns, conversations in counts:
        row = next(line for line in section.splitlines() if check_id in line)
        assert f"│ {turns} " in row and f"│ {conversations} " in row


# ---- the dataset leaves out broken users ------------------------------------------------------


def _judged(db: Path, user_backend: str, count: int = 40) -> None:
    _generate(db, user_backend, count=count)
    judge_corpus(JudgeRequest(db=db, judges=("simulated:quality=0.95",)))


def _passing_with_checks(db: Path) -> dict[str, set[str]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT conversation_id, check_id FROM simulator_checks WHERE conversation_id IN "
            "(SELECT conversation_id FROM conversation_judgement WHERE passed)"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for cid, check_id in rows:
        found.setdefault(cid, set()).add(check_id)
    return found


def _built_ids(out: Path) -> set[str]:
    import pandas as pd

    return {
        cid
        for part in out.glob("*.jsonl")
        for cid in pd.read_json(part, lines=True)["conversation_id"]
    }


@pytest.mark.parametrize(("option", "check_id"), FAULT_CHECKS.items())
def test_a_conversation_whose_user_tripped_a_check_is_dropped_and_counted(
    tmp_path, option, check_id
):
    db = tmp_path / "corpus.duckdb"
    _judged(db, f"simulated:{option}=0.3")
    failed = _passing_with_checks(db)
    assert any(check_id in ids for ids in failed.values())
    out = tmp_path / "out"
    result = rapport_in_process(
        "dataset", "build", "--db", str(db), "--out", str(out), "--format", "jsonl"
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(failed)} by a model-free check" in result.stdout
    built = _built_ids(out)
    assert built and not built & set(failed)
    with duckdb.connect(str(db), read_only=True) as conn:
        excluded = conn.execute(
            "SELECT conversation_id, detail FROM dataset_exclusions "
            "WHERE reason = 'simulator_check' AND output = ?", [str(out.resolve())]
        ).fetchall()  # fmt: skip
    assert {cid: set(detail.split(", ")) for cid, detail in excluded} == failed
    card = (out / "README.md").read_text()
    hit = sum(check_id in ids for ids in failed.values())
    assert f"- conversations whose user side failed: {len(failed)}, dropped" in card
    assert f"{check_id} {hit}" in card
    assert f"as their user side failed: {len(failed)};" in card


def test_keep_simulator_failures_keeps_them_and_the_card_says_so(tmp_path):
    db = tmp_path / "corpus.duckdb"
    _judged(db, "simulated:user_breaks=0.3")
    failed = _passing_with_checks(db)
    assert failed
    out = tmp_path / "kept"
    result = rapport_in_process(
        "dataset", "build", "--db", str(db), "--out", str(out), "--format", "jsonl",
        "--keep-simulator-failures",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(failed) <= _built_ids(out)
    card = (out / "README.md").read_text()
    assert f"- conversations whose user side failed: {len(failed)}, kept anyway" in card
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM dataset_exclusions WHERE output = ? AND reason LIKE 'simulator%'",
            [str(out.resolve())],
        ).fetchone() == (0,)


def test_a_user_side_failing_its_rubric_is_dropped_with_its_gates_and_score(tmp_path):
    """The user side's judgements as the simulator rubric's judging stores them (rows written
    here directly): a failed gate and a score below the rule drop a conversation; a pass keeps
    it, and the card's flaw table reads the kept conversations' FLAW:<flaw> verdicts."""
    db = tmp_path / "corpus.duckdb"
    _judged(db, "simulated")
    with duckdb.connect(str(db)) as conn:
        passing = [r[0] for r in conn.execute(
            "SELECT j.conversation_id FROM conversation_judgement j JOIN conversations c "
            "USING (conversation_id) JOIN scenarios s USING (scenario_id) "
            "WHERE j.passed AND len(s.flaw_names) > 0 ORDER BY 1 LIMIT 3").fetchall()]  # fmt: skip
        gate, low, good = passing
        rows = [
            (gate, False, 0.9, ["never_discloses_ai"]),
            (low, False, 0.4, []),
            (good, True, 0.95, []),
        ]
        for cid, passed, score, gates in rows:
            conn.execute(
                "INSERT INTO simulator_assessments VALUES (?, 'judge-1', ?, ?, ?, 0.7, '{}', ?, now())",
                [cid, score, passed, bool(gates), gates],
            )
        flaw = conn.execute(
            "SELECT s.flaw_names[1] FROM conversations c JOIN scenarios s USING (scenario_id) "
            "WHERE c.conversation_id = ?", [good]
        ).fetchone()[0]  # fmt: skip
        conn.execute(
            "INSERT INTO simulator_verdicts VALUES (?, 'judge-1', ?, 'YES', 'shown', 'm', now())",
            [good, f"FLAW:{flaw}"],
        )
    out = tmp_path / "out"
    result = rapport_in_process(
        "dataset", "build", "--db", str(db), "--out", str(out), "--format", "jsonl"
    )
    assert result.returncode == 0, result.stderr
    assert "2 by its rubric" in result.stdout
    built = _built_ids(out)
    assert good in built and gate not in built and low not in built
    with duckdb.connect(str(db), read_only=True) as conn:
        details = dict(conn.execute(
            "SELECT conversation_id, detail FROM dataset_exclusions WHERE reason = 'simulator_failed'"
        ).fetchall())  # fmt: skip
    assert details == {
        gate: "failed gates: never_discloses_ai; mean score 0.90",
        low: "mean score 0.40, below the rule",
    }
    card = (out / "README.md").read_text()
    assert "- its rubric failed (a gate or the pass rule): 2" in card
    flaw_row = next(line for line in card.splitlines() if line.startswith(f"| {flaw} |"))
    assert flaw_row.endswith("| 1 | 1 (100%) |")


# ---- the domain's phrase lists ----------------------------------------------------------------


def test_domain_check_refuses_a_disclosure_phrase_its_own_simulated_user_says(tmp_path):
    folder = tmp_path / "bikes"
    shutil.copytree(TINY_DOMAIN, folder)
    with (folder / "domain.yaml").open("a") as yaml:
        yaml.write('simulator_checks:\n  disclosure_phrases: ["as an ai", "quick one", "  "]\n')
    result = rapport_in_process("domain", "check", str(folder))
    assert result.returncode != 0
    assert "'quick one:' holds the disclosure phrase 'quick one'" in result.stdout + result.stderr
    assert "simulator_checks.disclosure_phrases[2]: empty phrase" in result.stdout + result.stderr
    loaded = load_domain(TINY_DOMAIN)  # without the key: the generic lists
    assert loaded.info.simulator_checks == SimulatorChecks()


# ---- shards ---------------------------------------------------------------------------------


def test_merged_shards_carry_the_checks_a_single_run_stores(tmp_path):
    def play(db: Path, shard: Shard | None) -> None:
        generate(
            GenerateRequest(
                db=db, count=12, seed=5, domain=TINY_DOMAIN, shard=shard,
                user_backend="simulated:user_breaks=0.5", assistant_backend="simulated",
            )
        )  # fmt: skip

    single = tmp_path / "single.duckdb"
    play(single, None)
    shards = [tmp_path / f"shard-{k}.duckdb" for k in range(2)]
    for k, path in enumerate(shards):
        play(path, Shard(k, 2))
    merged = tmp_path / "merged.duckdb"
    result = rapport_in_process("merge", "--out", str(merged), *map(str, shards))
    assert result.returncode == 0, result.stderr
    with (
        duckdb.connect(str(single), read_only=True) as a,
        duckdb.connect(str(merged), read_only=True) as b,
    ):
        expected = a.execute(CHECKS_SQL).fetchall()
        assert expected and b.execute(CHECKS_SQL).fetchall() == expected


def test_a_corpus_whose_every_user_broke_character_builds_nothing_and_says_why(tmp_path):
    db = tmp_path / "broken.duckdb"
    _judged(db, "simulated:user_discloses=1", count=10)
    result = rapport_in_process("dataset", "build", "--db", str(db), "--out", str(tmp_path / "o"))
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "--keep-simulator-failures keeps them" in lines[0]
    assert not (tmp_path / "o").exists()
