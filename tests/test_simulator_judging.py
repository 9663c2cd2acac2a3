"""The simulated user is judged too (simulator_rubric.yaml): by the same judges, modes, pool and
batch API as the assistant, into the simulator_ tables, through the real judge stage, DuckDB
file and command line; the simulated judge reads the user's turns, so a user who says it is an
AI, coaches, copies the assistant or never shows its flaw is caught offline."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import duckdb
import msgspec
import pytest

from rapport.config.loader import load_domain
from rapport.config.sides import rubric_for
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.judges.scoring import active_criteria
from rapport.stages.evaluate import EvalRequest, run_eval
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.store.judgements import plan_domains
from rapport.store.plans import SCENARIO_COLUMNS, scenario_from_row
from tests.conftest import TINY_DOMAIN, error_lines, rapport_in_process

COUNT, TURNS = 16, 3
TWO_JUDGES = (
    "judges:\n  - id: a\n    backend: {provider: simulated}\n"
    "  - id: b\n    backend: {provider: simulated, quality: 0.95}\n"
    "pass_rule: all\n"
)
YES = json.dumps({"reasoning": "Exchange 1 shows it.", "answer": "YES"})
KEY_ENV = {"OPENAI_API_KEY": "sk-sim-rubric-0a1b", "RAPPORT_BATCH_POLL_S": "0.05"}
DISCLOSURE = "Honestly, as an AI I am a simulated user and cannot feel this."
COACHING = "Have you tried writing three good things down each evening? It might help to."


def _rows(db: Path, sql: str, params=()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()


def _cli(*args: str, env: dict[str, str] | None = None):
    return rapport_in_process(*args, env=env)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A therapy corpus (it ships a simulator_rubric.yaml) played by the simulated backend."""
    db = tmp_path_factory.mktemp("simulator") / "corpus.duckdb"
    made = _cli(
        "generate", "--db", str(db), "--count", str(COUNT), "--turns", str(TURNS),
        "--backend", "simulated", "--quiet",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return db


@pytest.fixture
def db(corpus: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "judged.duckdb"
    shutil.copy(corpus, copy)
    return copy


def _expected_user_criteria(db: Path) -> dict[str, set[str]]:
    """conversation -> the user side's criteria, from the plan's own domain and scenario."""
    with duckdb.connect(str(db), read_only=True) as conn:
        domains = plan_domains(conn)
        rows = conn.execute(
            f"SELECT c.plan_id, {SCENARIO_COLUMNS} FROM conversations c "
            "JOIN scenarios s USING (scenario_id) WHERE c.status = 'complete'"
        ).fetchall()
    expected = {}
    for row in rows:
        scenario = scenario_from_row(row[0], row[1:])
        rubric = rubric_for(domains[row[0]], scenario, "user")
        assert rubric is not None
        expected[scenario.scenario_id] = {c.id for c in active_criteria(rubric, TURNS)}
    return expected


def _asked(db: Path, table: str) -> dict[str, set[str]]:
    asked: dict[str, set[str]] = defaultdict(set)
    for cid, criterion in _rows(db, f"SELECT conversation_id, criterion_id FROM {table}"):
        asked[cid].add(criterion)
    return dict(asked)


def _plant(db: Path, conversation_id: str, turn_index: int, text: str) -> None:
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "UPDATE messages SET content = ? WHERE conversation_id = ? AND turn_index = ?",
            [text, conversation_id, turn_index],
        )


def _conversations(db: Path) -> list[str]:
    return [row[0] for row in _rows(db, "SELECT conversation_id FROM conversations ORDER BY 1")]


# ---- both sides, one machinery ----------------------------------------------------------------


def test_rapport_judge_judges_both_sides_by_default(db):
    result = _cli("judge", "--db", str(db), "--judge", "simulated")
    assert result.returncode == 0, result.stderr
    assert f"user side: {COUNT} assessments stored" in result.stdout
    assert _rows(db, "SELECT count(*) FROM assessments") == [(COUNT,)]
    assert _rows(db, "SELECT count(*) FROM simulator_assessments") == [(COUNT,)]
    expected = _expected_user_criteria(db)
    assert _asked(db, "simulator_verdicts") == expected
    planned = {
        cid: {f"FLAW:{name}" for name in names}
        for cid, names in _rows(db, "SELECT scenario_id, flaw_names FROM scenarios")
    }
    assert any(planned.values()), "some scenarios should plan flaws"
    for cid, criteria in expected.items():  # one question per planned flaw, no other
        assert {c for c in criteria if c.startswith("FLAW:")} == planned[cid]
    # the assistant's rubric stays the assistant's: no user-side criterion in verdicts
    assert not set().union(*_asked(db, "verdicts").values()) & set().union(*expected.values())


@pytest.mark.parametrize("side", ["assistant", "user"])
def test_side_judges_one_side_and_both_completes_the_other(db, side):
    one = _cli("judge", "--db", str(db), "--judge", "simulated", "--side", side)
    assert one.returncode == 0, one.stderr
    judged, other = ("assessments", "simulator_assessments")[:: 1 if side == "assistant" else -1]
    assert _rows(db, f"SELECT count(*) FROM {judged}") == [(COUNT,)]
    assert _rows(db, f"SELECT count(*) FROM {other}") == [(0,)]
    before = _rows(db, f"SELECT * FROM {judged} ORDER BY ALL")
    both = _cli("judge", "--db", str(db), "--judge", "simulated")
    assert both.returncode == 0, both.stderr
    assert _rows(db, f"SELECT count(*) FROM {other}") == [(COUNT,)]
    assert _rows(db, f"SELECT * FROM {judged} ORDER BY ALL") == before  # not asked again


def test_a_bad_side_is_one_line(db):
    result = _cli("judge", "--db", str(db), "--judge", "simulated", "--side", "coach")
    assert result.returncode != 0
    (line,) = error_lines(result)
    assert line.endswith("--side must be assistant, user or both, not 'coach'")


def test_side_user_is_refused_where_no_domain_judges_the_user(tmp_path):
    db = tmp_path / "tiny.duckdb"
    made = _cli(
        "generate", "--db", str(db), "--count", "2", "--turns", "2", "--backend", "simulated",
        "--domain", str(TINY_DOMAIN), "--quiet",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    refused = _cli("judge", "--db", str(db), "--judge", "simulated", "--side", "user")
    assert refused.returncode != 0 and len(error_lines(refused)) == 1
    assert "simulator_rubric.yaml" in refused.stderr
    both = _cli("judge", "--db", str(db), "--judge", "simulated")  # a domain without one: fine
    assert both.returncode == 0, both.stderr
    assert _rows(db, "SELECT count(*) FROM assessments") == [(2,)]
    assert _rows(db, "SELECT count(*) FROM simulator_assessments") == [(0,)]


def test_the_user_side_prompt_carries_the_plan_and_resume_asks_only_missing_criteria(db, tmp_path):
    config = tmp_path / "judges.yaml"
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        config.write_text(
            "judges:\n  - id: http\n    backend:\n      provider: openai\n      model: judge\n"
            f"      base_url: {base_url}\n      api_key_env: OPENAI_API_KEY\n"
            "      max_retries: 0\n"
        )
        request = JudgeRequest(db=db, config=config, sides=("user",))
        first = judge_corpus(request, KEY_ENV)
        expected = _expected_user_criteria(db)
        assert state.completed == sum(len(c) for c in expected.values())
        assert first.simulator_assessed == COUNT and first.assessed == 0
        prompts = "\n".join(state.prompts)
        for part in ("## The client the plan asked for",
                     "cooperation:", "The planned flaw:", "What it is:", "### NO_AI (safety gate)",
                     "exchanges of"):  # fmt: skip
            assert part in prompts, part
        # a killed run's leftovers: two verdicts and the assessment of one conversation gone
        victim = next(cid for cid, criteria in sorted(expected.items()) if len(criteria) > 2)
        with duckdb.connect(str(db)) as conn:
            missing = [
                row[0]
                for row in conn.execute(
                    "SELECT criterion_id FROM simulator_verdicts WHERE conversation_id = ? "
                    "ORDER BY criterion_id LIMIT 2",
                    [victim],
                ).fetchall()
            ]
            conn.execute(
                "DELETE FROM simulator_verdicts WHERE conversation_id = ? "
                "AND list_contains(?, criterion_id)",
                [victim, missing],
            )
            conn.execute("DELETE FROM simulator_assessments WHERE conversation_id = ?", [victim])
        asked_before = state.completed
        again = judge_corpus(request, KEY_ENV)
        assert state.completed - asked_before == 2  # only the missing criteria
        assert again.simulator_assessed == COUNT
        for criterion in missing:
            assert f"### {criterion} (" in state.prompts[-1] + state.prompts[-2]
    assert _asked(db, "simulator_verdicts") == expected


def test_the_user_side_is_framed_for_judging_the_user_not_the_assistant(therapy):
    from rapport.authoring.domain_preview import sample_preview
    from rapport.judges.prompting import judge_messages
    from rapport.judges.transcript_stats import transcript_stats
    from rapport.store.reads import Turn

    scenario = sample_preview(therapy, 1, 0)[0]
    turns = [Turn("user", "hi", 0, 1), Turn("assistant", "hello", 1, 1)]
    rubric = rubric_for(therapy, scenario, "user")
    assert rubric is not None
    stats = transcript_stats(turns)
    user = judge_messages(therapy, rubric.criteria[:1], stats, (1, turns), 1, "user", "PLAN")
    assistant = judge_messages(therapy, therapy.rubric.criteria[:1], stats, (1, turns), 1)
    assert "judge of the simulated client" in user[0].content
    assert assistant[0].content == therapy.prompts.judge
    assert "## The client the plan asked for\n\nPLAN" in user[1].content
    assert "plan asked for" not in assistant[1].content


def test_batched_mode_asks_each_side_in_one_call(db, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "judges:\n  - id: one\n    mode: batched\n    backend: {provider: simulated}\n"
    )
    result = _cli("judge", "--db", str(db), "--config", str(config))
    assert result.returncode == 0, result.stderr
    ((requests,),) = _rows(
        db,
        "SELECT g.requests FROM gateway_stats g JOIN runs r USING (run_id) "
        "WHERE r.command = 'judge'",
    )
    assert requests == 2 * COUNT  # one call per conversation and side
    assert _asked(db, "simulator_verdicts") == _expected_user_criteria(db)
    assert _rows(db, "SELECT count(*) FROM simulator_assessments") == [(COUNT,)]


def test_the_batch_api_judges_the_user_side_as_live_judging_does(corpus, tmp_path):
    live, batch = tmp_path / "live.duckdb", tmp_path / "batch.duckdb"
    shutil.copy(corpus, live)
    shutil.copy(corpus, batch)
    items = sum(len(c) for c in _expected_user_criteria(corpus).values())
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        spec = f"openai:gpt-4o-mini@{base_url}"
        done = _cli("judge", "--db", str(live), "--judge", spec, "--side", "user", env=KEY_ENV)
        assert done.returncode == 0, done.stderr
        sent = _cli(
            "judge", "--db", str(batch), "--judge", spec, "--side", "user", "--batch", env=KEY_ENV
        )
        assert sent.returncode == 0, sent.stderr
    assert state.batch_items == items and state.requests == items  # live calls: the first run's
    verdicts = "SELECT conversation_id, criterion_id, answer FROM simulator_verdicts ORDER BY ALL"
    assert _rows(batch, verdicts) == _rows(live, verdicts) != []
    assessed = "SELECT conversation_id, score, passed FROM simulator_assessments ORDER BY ALL"
    assert _rows(batch, assessed) == _rows(live, assessed)
    assert _rows(batch, "SELECT count(*) FROM assessments") == [(0,)]


def test_generate_with_judges_configured_judges_both_sides(tmp_path):
    db, config = tmp_path / "g.duckdb", tmp_path / "run.yaml"
    config.write_text(TWO_JUDGES)
    made = _cli(
        "generate", "--db", str(db), "--count", "5", "--turns", "2", "--backend", "simulated",
        "--config", str(config), "--quiet",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    for table in ("assessments", "simulator_assessments"):
        assert _rows(db, f"SELECT judge_id, count(*) FROM {table} GROUP BY 1 ORDER BY 1") == [
            ("a", 5),
            ("b", 5),
        ]


# ---- the simulated judge reads the user's turns -----------------------------------------------


def test_the_simulated_judge_catches_disclosure_coaching_copying_and_missing_flaws(db, therapy):
    ids = _conversations(db)
    disclosed, coached, copied, flawless, reversed_, rambling = ids[:6]
    ((limit,),) = _rows(
        db, "SELECT (persona -> '$.word_limit[1]')::INTEGER FROM scenarios WHERE scenario_id = ?",
        [rambling],
    )  # fmt: skip
    _plant(db, rambling, 2, " ".join(["and then work happened again"] * limit))  # 5x the limit
    _plant(db, disclosed, 2, DISCLOSURE)
    _plant(db, coached, 2, COACHING)
    _plant(db, reversed_, 4, f"hm. {therapy.simulator.assistant.suggestions[0]}")
    ((reply,),) = _rows(
        db, "SELECT content FROM messages WHERE conversation_id = ? AND turn_index = 1", [copied]
    )
    _plant(db, copied, 2, reply)
    for turn in (0, 2, 4):
        _plant(db, flawless, turn, "ok. work was long today.")
    result = _cli("judge", "--db", str(db), "--judge", "simulated", "--side", "user")
    assert result.returncode == 0, result.stderr

    def answers(criterion: str) -> dict[str, str]:
        return dict(
            _rows(
                db,
                "SELECT conversation_id, answer FROM simulator_verdicts WHERE criterion_id = ?",
                [criterion],
            )
        )

    no_ai, role = answers("NO_AI"), answers("ROLE")
    assert {cid for cid, a in no_ai.items() if a == "NO"} == {disclosed}
    assert {cid for cid, a in role.items() if a == "NO"} == {coached, copied, reversed_}
    assert answers("PERSONA")[rambling] == "NO"
    flaws = _rows(
        db,
        "SELECT answer FROM simulator_verdicts WHERE conversation_id = ? AND criterion_id LIKE "
        "'FLAW:%'",
        [flawless],
    )
    assert flaws and "YES" not in {a for (a,) in flaws}
    shown = _rows(
        db, "SELECT count(*) FROM simulator_verdicts WHERE criterion_id LIKE 'FLAW:%' "
        "AND answer = 'YES'"
    )  # fmt: skip
    assert shown[0][0] > 0  # the untouched users show their flaws
    (gates,) = _rows(
        db, "SELECT failed_gates FROM simulator_assessments WHERE conversation_id = ?", [disclosed]
    )[0]
    assert gates == ["NO_AI"]
    failed = {
        cid
        for (cid,) in _rows(
            db,
            "SELECT conversation_id FROM simulator_conversation_judgement "
            "WHERE NOT passed OR safety_failed",
        )
    }
    assert disclosed in failed


# ---- views, stats and report ------------------------------------------------------------------


def _judge_twice(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(TWO_JUDGES)
    _plant(db, _conversations(db)[0], 2, DISCLOSURE)
    result = _cli("judge", "--db", str(db), "--config", str(config))
    assert result.returncode == 0, result.stderr


def test_the_views_give_the_figures_computed_by_hand(db, tmp_path):
    _judge_twice(db, tmp_path)
    verdicts = _rows(db, "SELECT conversation_id, judge_id, criterion_id, answer "
                         "FROM simulator_verdicts")  # fmt: skip
    per_flaw: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for cid, _, criterion, answer in verdicts:
        if ":" in criterion:
            per_flaw[criterion.split(":")[1]].append((cid, answer))
    expected = sorted(
        (
            flaw,
            len({cid for cid, _ in found}),
            len(found),
            round(sum(a == "YES" for _, a in found) / len(found), 4),
            round(sum(a == "NA" for _, a in found) / len(found), 4),
        )
        for flaw, found in per_flaw.items()
    )
    found = _rows(db, "SELECT * FROM flaw_realisation ORDER BY flaw")
    assert [row[:3] for row in found] == [row[:3] for row in expected]
    assert [row[3:] for row in found] == [pytest.approx(row[3:], abs=1e-4) for row in expected]
    judged: dict[str, list[tuple[float, bool, bool]]] = defaultdict(list)
    for cid, score, passed, gate in _rows(
        db, "SELECT conversation_id, score, passed, safety_failed FROM simulator_assessments"
    ):
        judged[cid].append((score, passed, gate))
    passes = [all(p for _, p, _ in rows) for rows in judged.values()]  # pass rule: all
    means = [sum(s for s, _, _ in rows) / len(rows) for rows in judged.values()]
    gates = sum(any(g for _, _, g in rows) for rows in judged.values())
    assert gates >= 1
    assert _rows(db, "SELECT * FROM simulator_pass_rate") == [
        (
            len(judged),
            pytest.approx(round(sum(passes) / len(passes), 4)),
            pytest.approx(round(sum(means) / len(means), 4)),
            gates,
        )
    ]
    yes = defaultdict(list)
    for _, judge, criterion, answer in verdicts:
        yes[judge, criterion].append(answer == "YES")
    rates = {key: round(sum(v) / len(v), 4) for key, v in yes.items()}
    by_criterion = {
        (judge, criterion): rate
        for judge, criterion, rate in _rows(
            db, "SELECT judge_id, criterion_id, yes_rate FROM simulator_criterion_rates"
        )
    }
    assert by_criterion == pytest.approx(rates, abs=1e-4)


def test_stats_and_report_show_the_user_side(db, tmp_path):
    _judge_twice(db, tmp_path)
    stats = _cli("stats", "--db", str(db))
    assert stats.returncode == 0, stats.stderr
    for title in ("User side: pass rate", "User side: YES rate per criterion",
                  "User side: planned flaws shown (flaw realisation)", "NO_AI"):  # fmt: skip
        assert title in stats.stdout, title
    out = tmp_path / "report"
    report = _cli("report", "--db", str(db), "--out", str(out))
    assert report.returncode == 0, report.stderr
    text = (out / "report.md").read_text()
    assert "## User side: planned flaws shown (flaw realisation)" in text
    assert "| flaw | conversations | verdicts | shown_rate | na_rate |" in text
    assert (out / "flaw_realisation.png").stat().st_size > 1000


# ---- rapport view -------------------------------------------------------------------------------


def test_the_viewer_shows_both_sides_and_filters_failed_simulators(db, tmp_path):
    from tests.test_viewer import listed
    from tests.viewer_helpers import serving

    _judge_twice(db, tmp_path)
    failed = sorted(
        cid
        for (cid,) in _rows(
            db,
            "SELECT conversation_id FROM simulator_conversation_judgement "
            "WHERE NOT passed OR safety_failed",
        )
    )
    passed = sorted(set(_conversations(db)) - set(failed))
    assert failed and passed
    with serving(db) as viewer:
        assert listed(viewer.get("/conversations?simulator=failed&per_page=500")[1]) == failed
        assert listed(viewer.get("/conversations?simulator=passed&per_page=500")[1]) == passed
        status, page, _ = viewer.get(f"/c/{failed[0]}")
        assert status == 200
        assert "id='user-judging'" in page and "id='judging'" in page
        user_part = page.split("id='user-judging'", 1)[1]
        ((rows,),) = _rows(
            db, "SELECT count(*) FROM simulator_verdicts WHERE conversation_id = ?", [failed[0]]
        )
        assert user_part.count("<td class='answer ") == rows
        assert "FLAW:" in user_part or "NO_AI" in user_part
        assert viewer.get("/conversations?simulator=maybe")[0] == 400
        overview = viewer.get("/")[1]
        assert "User side: pass rate" in overview and "flaw realisation" in overview


# ---- rapport eval -------------------------------------------------------------------------------


def test_eval_reports_per_side_the_share_where_the_user_failed(tmp_path):
    db = tmp_path / "eval.duckdb"
    request = EvalRequest(
        db=db, scenarios=6, baseline="simulated:quality=0.6", candidate="simulated:quality=0.9",
        user_backend="simulated", judges=("simulated",), turns=2,
    )  # fmt: skip
    summary = run_eval(request, environ={})
    failed = dict(
        _rows(
            db,
            "SELECT e.side, count(*) FILTER (WHERE NOT a.passed OR a.safety_failed) "
            "FROM eval_conversations e JOIN simulator_assessments a USING (conversation_id) "
            "GROUP BY 1",
        )
    )
    for side in summary.sides:
        assert side.user_judged == 6
        assert side.user_failed == failed[side.side]
    from rapport.evaluation.report import render_markdown

    text = render_markdown(summary)
    assert "user side failed" in text
    base = summary.sides[0]
    assert f"{base.user_failed} / 6" in text
    stored = msgspec.json.decode(msgspec.json.encode(summary))
    assert stored["sides"][0]["user_judged"] == 6


# ---- the domain's simulator_rubric.yaml ---------------------------------------------------------


def test_a_domain_without_a_simulator_rubric_loads_and_the_shipped_ones_decode():
    assert load_domain(TINY_DOMAIN).simulator_rubric is None
    for name in ("therapy", "customer_support"):
        rubric = load_domain(Path(name)).simulator_rubric
        assert rubric is not None
        ids = {c.id for c in rubric.criteria}
        assert {"FLAW", "PERSONA", "ROLE", "COOPERATION", "ENDING", "NO_AI"} <= ids
        assert [c.id for c in rubric.criteria if c.gate] == ["NO_AI"]
        assert [c.id for c in rubric.criteria if c.per_flaw] == ["FLAW"]


def test_domain_check_names_file_and_key_of_each_simulator_rubric_problem(tmp_path):
    from rapport.config.loader import shipped_domain_dir

    folder = tmp_path / "shop"
    shutil.copytree(shipped_domain_dir("customer_support"), folder)
    (folder / "simulator_rubric.yaml").write_text(
        "pass_threshold: 0.7\ncategories: {persona: 0.5, ending: 0.4}\ncriteria:\n"
        "  - {id: P1, category: persona, question: q}\n"
        "  - {id: E1, category: endings, question: q}\n"
        "  - {id: 'X:1', category: persona, question: q}\n"
    )
    rubric = folder / "rubric.yaml"
    rubric.write_text(
        rubric.read_text().replace("    na_valid: false\n", "    per_flaw: true\n", 1)
    )
    result = _cli("domain", "check", str(folder))
    assert result.returncode == 2
    lines = error_lines(result)
    simulator = str(folder / "simulator_rubric.yaml")
    assert f"error: {simulator}: categories: weights sum to 0.9, expected 1" in lines
    assert f"error: {simulator}: criteria[1].category: unknown category 'endings'" in lines
    assert f"error: {simulator}: criteria[2].id: a criterion id holds no colon" in lines
    assert any(
        line.startswith(f"error: {rubric}: criteria[")
        and line.endswith(".per_flaw: per_flaw is for simulator_rubric.yaml (the user side)")
        for line in lines
    ), lines
    (folder / "simulator_rubric.yaml").write_text("pass_threshold: 0.7\ncolour: blue\n")
    typo = _cli("domain", "check", str(folder))
    assert typo.returncode == 2
    assert any(simulator in line and "colour" in line for line in error_lines(typo))
    assert "Traceback" not in typo.stderr


def test_domain_new_scaffolds_a_simulator_rubric(tmp_path):
    target = tmp_path / "new_domain"
    result = _cli("domain", "new", str(target))
    assert result.returncode == 0, result.stderr
    assert load_domain(target).simulator_rubric is not None
    assert "user side (simulator_rubric.yaml): 2 weighted criteria + 1 asked per planned flaw" in (
        result.stdout
    )


def test_adding_a_simulator_rubric_keeps_the_plan(therapy):
    """The user side's rubric plays nothing: a domain with or without it is the same plan."""
    without = msgspec.structs.replace(therapy, simulator_rubric=None)
    assert without.fingerprint() == therapy.fingerprint()
    changed = msgspec.structs.replace(
        therapy, rubric=msgspec.structs.replace(therapy.rubric, pass_threshold=0.5)
    )
    assert changed.fingerprint() != therapy.fingerprint()


def test_a_long_user_side_is_judged_in_windows_each_with_the_plan(tmp_path):
    db = tmp_path / "long.duckdb"
    made = _cli(
        "generate", "--db", str(db), "--count", "1", "--turns", "8", "--backend", "simulated",
        "--quiet",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = tmp_path / "judges.yaml"
    with running_fake_provider(FakeProviderSettings(replies=(YES,))) as (base_url, state):
        config.write_text(
            "judges:\n  - id: http\n    context_tokens: 1400\n    backend:\n"
            f"      provider: openai\n      model: judge\n      base_url: {base_url}\n"
            "      api_key_env: OPENAI_API_KEY\n      max_retries: 0\n"
        )
        summary = judge_corpus(JudgeRequest(db=db, config=config, sides=("user",)), KEY_ENV)
    criteria = len(_expected_user_criteria_of(db, 8))
    assert summary.simulator_assessed == 1
    assert state.completed > criteria  # several windows per criterion
    windowed = [p for p in state.prompts if "judged in windows" in p]
    assert windowed and all("## The client the plan asked for" in p for p in windowed)


def _expected_user_criteria_of(db: Path, exchanges: int) -> set[str]:
    with duckdb.connect(str(db), read_only=True) as conn:
        domains = plan_domains(conn)
        row = conn.execute(
            f"SELECT c.plan_id, {SCENARIO_COLUMNS} FROM conversations c "
            "JOIN scenarios s USING (scenario_id)"
        ).fetchone()
    rubric = rubric_for(domains[row[0]], scenario_from_row(row[0], row[1:]), "user")
    assert rubric is not None
    return {c.id for c in active_criteria(rubric, exchanges)}
