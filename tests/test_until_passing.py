"""`rapport generate --until-passing N`: exactly N conversations pass, in the plan's topic and
flaw mix, although the simulated judge's yield differs by topic (`topic_quality`)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from rapport.config.loader import load_domain
from rapport.config.shards import Shard
from rapport.engine.plan import sample_scenario
from rapport.engine.strata import quotas, shard_quotas, stratum_label, stratum_weights
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.generate import GenerateRequest, generate
from rapport.store.passing import awaiting_judgement, stratum_counts
from tests.conftest import TESTS, error_lines, rapport, rapport_in_process

STRATA_DOMAIN = TESTS / "domains" / "strata"  # topics 0.7 : 0.3, 30 % without a flaw
# The judge passes most brake conversations and few drivetrain ones: yields differ ~3×.
JUDGE = (
    "judges:\n  - id: sim\n    backend: {provider: simulated, quality: 0.95, "
    "topic_quality: {brakes: 0.97, drivetrain: 0.62}}\n"
)
TOLERANCE = 0.02  # the mix tolerance, per stratum of at least 5 % weight


def _config(tmp_path: Path, backends: str | None = None, extra: str = "") -> Path:
    role = "{provider: simulated}"
    backends = backends or f"backends:\n  user_sim: {role}\n  assistant: {role}\n"
    path = tmp_path / "run.yaml"
    path.write_text(f"domain: {STRATA_DOMAIN}\n{backends}{JUDGE}{extra}")
    return path


def _request(db: Path, config: Path, target: int, **fields) -> GenerateRequest:
    values = {"count": 10 * target, "turns": 2, "max_active": 16, "judging": "configured"}
    return GenerateRequest(db=db, config=config, until_passing=target, **(values | fields))


def _passing_by_stratum(db: Path) -> dict[str, tuple[int, int]]:
    """Per stratum in the store: (judged, passing), read from the views directly."""
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT st.stratum, count(*), count(*) FILTER (WHERE p.passed) "
            "FROM conversation_passes p JOIN conversations c USING (conversation_id) "
            "JOIN scenario_strata st USING (scenario_id) GROUP BY 1"
        ).fetchall()
    return {stratum: (judged, passing) for stratum, judged, passing in rows}


@pytest.fixture(scope="module")
def strata_domain():
    return load_domain(STRATA_DOMAIN)


@pytest.fixture(scope="module")
def reached(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("until")
    db = tmp / "corpus.duckdb"
    summary = generate(_request(db, _config(tmp), 60))
    return db, summary, tmp


# ---- strata and quotas ---------------------------------------------------------------------


def test_stratum_weights_are_the_plans_own_sampling_frequencies(strata_domain):
    weights = stratum_weights(strata_domain)
    assert weights == pytest.approx(
        {"brakes/vague": 0.49, "brakes/none": 0.21, "drivetrain/vague": 0.21,
         "drivetrain/none": 0.09}
    )  # fmt: skip
    drawn = Counter()
    for index in range(4000):
        scenario = sample_scenario(strata_domain, "p", 5, index)
        primary = next((f.category for f in scenario.flaws if f.role == "primary"), "none")
        drawn[stratum_label(scenario.topics[0].category, primary)] += 1
    for stratum, weight in weights.items():
        assert drawn[stratum] / 4000 == pytest.approx(weight, abs=0.025)


def test_quotas_add_up_to_the_target_and_each_is_its_share_rounded():
    rng = random.Random(3)
    for _ in range(200):
        weights = {f"s{i}": rng.random() for i in range(rng.randint(1, 25))}
        target = rng.randint(1, 5000)
        wanted = quotas(weights, target)
        total = sum(weights.values())
        assert sum(wanted.values()) == target
        assert all(abs(q - target * weights[s] / total) < 1 for s, q in wanted.items())


def test_shards_split_every_quota_and_their_targets_differ_by_at_most_one():
    whole = quotas({"a": 0.49, "b": 0.21, "c": 0.21, "d": 0.09}, 101)
    for count in (1, 2, 3, 7):
        parts = [shard_quotas(whole, Shard(k, count)) for k in range(count)]
        for stratum, quota in whole.items():
            assert sum(part[stratum] for part in parts) == quota
        targets = [sum(part.values()) for part in parts]
        assert sum(targets) == 101 and max(targets) - min(targets) <= 1


def test_the_sql_strata_label_stored_scenarios_as_the_plan_drew_them(reached, strata_domain):
    db, summary, _ = reached
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT scenario_index, stratum FROM scenario_strata WHERE plan_id = ? "
            "ORDER BY scenario_index LIMIT 200",
            [summary.plan_id],
        ).fetchall()
        seed = conn.execute("SELECT seed FROM plans").fetchone()[0]
    assert len(rows) == 200
    for index, stratum in rows:
        scenario = sample_scenario(strata_domain, summary.plan_id, seed, index, 2)
        primary = next((f.category for f in scenario.flaws if f.role == "primary"), "none")
        assert stratum == stratum_label(scenario.topics[0].category, primary)


# ---- reaching the target -------------------------------------------------------------------


def test_exactly_the_target_passes_in_the_plans_mix_although_yields_differ(reached, strata_domain):
    db, summary, _ = reached
    passing = summary.passing
    assert passing is not None and passing.reached and passing.passing == 60
    stored = _passing_by_stratum(db)
    assert sum(p for _, p in stored.values()) == 60  # no overshoot: nothing beyond the target
    weights = stratum_weights(strata_domain)
    for stratum, weight in weights.items():
        _, passed = stored[stratum]
        assert passed == passing_quota(passing, stratum)
        assert abs(passed / 60 - weight) <= TOLERANCE
    yields = {s: p / j for s, (j, p) in stored.items()}
    assert min(yields["brakes/vague"], yields["brakes/none"]) > 1.5 * max(
        yields["drivetrain/vague"], yields["drivetrain/none"]
    )
    # Low-yield strata were drawn more: their share of what was judged is above their weight.
    judged_total = sum(j for j, _ in stored.values())
    assert stored["drivetrain/vague"][0] / judged_total > weights["drivetrain/vague"] + 0.05


def passing_quota(passing, stratum: str) -> int:
    return next(s.quota for s in passing.strata if s.stratum == stratum)


def test_scenarios_skipped_for_a_full_stratum_get_no_conversation(reached):
    db, summary, _ = reached
    with duckdb.connect(str(db), read_only=True) as conn:
        scenarios, conversations, unfinished = conn.execute(
            "SELECT (SELECT count(*) FROM scenarios), (SELECT count(*) FROM conversations), "
            "(SELECT count(*) FROM conversations WHERE status <> 'complete')"
        ).fetchone()
    assert conversations < scenarios and unfinished == 0
    assert summary.complete == conversations


def test_a_larger_target_continues_the_same_plan_without_replaying(reached):
    db, first, tmp = reached
    with duckdb.connect(str(db), read_only=True) as conn:
        before = dict(conn.execute("SELECT conversation_id, run_id FROM conversations").fetchall())
    second = generate(_request(db, _config(tmp), 90))
    assert second.plan_id == first.plan_id
    assert second.passing is not None and second.passing.passing == 90
    assert sum(p for _, p in _passing_by_stratum(db).values()) == 90
    with duckdb.connect(str(db), read_only=True) as conn:
        after = dict(conn.execute("SELECT conversation_id, run_id FROM conversations").fetchall())
    assert {cid: after[cid] for cid in before} == before  # the first run's conversations kept


def test_stats_show_the_yield_per_stratum(reached):
    db, _, _ = reached
    result = rapport_in_process("stats", "--db", str(db))
    assert result.returncode == 0
    assert "Yield by stratum" in result.stdout and "drivetrain/vague" in result.stdout


# ---- limits: --count, budget, shards -------------------------------------------------------


@pytest.mark.parametrize("count", [30, 60])
def test_a_quota_out_of_reach_of_count_is_named_with_how_far_it_got(tmp_path, count):
    """--count 60: the high-yield strata fill while scenarios of theirs wait for room, and the
    run still ends once the plan's first 60 are used up (a subprocess: a hang fails it)."""
    db = tmp_path / "corpus.duckdb"
    config = _config(tmp_path)
    args = ["generate", "--db", str(db), "--config", str(config), "--turns", "2"]
    result = rapport(*args, "--until-passing", "40", "--count", str(count), timeout=120)
    assert result.returncode == 3  # partial: some passed, the target was not reached
    (line,) = error_lines(result)
    assert re.match(r"\d+ of 40 passing conversations: \d strata could not reach", line)
    assert f"their quota within --count {count}:" in line
    assert "drivetrain/vague" in line and "judged)" in line


def test_the_command_line_prints_the_reached_line_and_exits_0(tmp_path):
    db = tmp_path / "corpus.duckdb"
    args = ["generate", "--db", str(db), "--config", str(_config(tmp_path)), "--turns", "2"]
    result = rapport_in_process(*args, "--until-passing", "12")
    assert result.returncode == 0, result.stderr
    assert "12 passing conversations reached: 4 strata at their quotas" in result.stdout


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--until-passing", "0"], "--until-passing 0: the target must be at least 1"),
        (["--until-passing", "-3"], "--until-passing -3: the target must be at least 1"),
        (["--until-passing", "5", "--no-judges"], "--until-passing needs judges"),
    ],
)
def test_bad_targets_are_one_line_errors(tmp_path, flags, needle):
    db = tmp_path / "corpus.duckdb"
    no_judges = "--no-judges" in flags
    config = tmp_path / "plain.yaml"
    config.write_text(
        f"domain: {STRATA_DOMAIN}\nbackends:\n  user_sim: {{provider: simulated}}\n"
        "  assistant: {provider: simulated}\n"
    )
    config = config if no_judges else _config(tmp_path)
    flags = [flag for flag in flags if flag != "--no-judges"]
    result = rapport_in_process("generate", "--db", str(db), "--config", str(config), *flags)
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert needle in line
    assert not db.exists()


def test_count_is_still_required_without_a_target(tmp_path):
    result = rapport_in_process("generate", "--db", str(tmp_path / "x.duckdb"))
    assert result.returncode == 2
    assert "--count is required (or --until-passing N)" in error_lines(result)[0]


def test_shards_each_reach_their_part_and_together_the_whole_mix(tmp_path, strata_domain):
    config = _config(tmp_path)
    whole = quotas(stratum_weights(strata_domain), 50)
    together: Counter[str] = Counter()
    for k in range(2):
        db = tmp_path / f"shard{k}.duckdb"
        summary = generate(_request(db, config, 50, shard=Shard(k, 2)))
        assert summary.passing is not None and summary.passing.reached
        assert summary.passing.target in (25, 26) and summary.shard == f"{k}/2"
        for stratum, (_, passed) in _passing_by_stratum(db).items():
            together[stratum] += passed
        with duckdb.connect(str(db), read_only=True) as conn:
            wrong = conn.execute(
                "SELECT count(*) FROM conversations WHERE scenario_index % 2 <> ?", [k]
            ).fetchone()[0]
        assert wrong == 0
    assert dict(together) == whole


def test_the_budget_stops_cleanly_and_a_larger_one_reaches_the_target(tmp_path):
    db = tmp_path / "corpus.duckdb"
    with running_fake_provider(FakeProviderSettings(reply_tokens=20)) as (url, _):
        role = (
            f"{{provider: openai, model: gpt-4o-mini, base_url: '{url}', "
            "api_key_env: RAPPORT_UNTIL_KEY, max_tokens: 40, rpm: 60000}"
        )
        backends = (
            f"backends:\n  user_sim: {role}\n  assistant: {role}\n"
            "prices:\n  gpt-4o-mini: {input: 1000.0, output: 1000.0}\n"
        )
        config = _config(tmp_path, backends)
        env = {"RAPPORT_UNTIL_KEY": "sk-until"}
        args = ["generate", "--db", str(db), "--config", str(config), "--turns", "2"]
        args += ["--until-passing", "8", "--max-active", "4"]
        stopped = rapport_in_process(*args, "--max-cost", "4", env=env)
        with duckdb.connect(str(db), read_only=True) as conn:
            statuses = dict(
                conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
            )
        finished = rapport_in_process(*args, "--max-cost", "5000", env=env)
    assert stopped.returncode == 5, stopped.stderr
    (line,) = error_lines(stopped)
    assert "budget of $4.00 reached" in line and "of 8 passing conversations" in line
    assert "short of quota: brakes/vague " in line and line.endswith("to continue")
    assert "failed" not in statuses
    assert finished.returncode == 0, finished.stderr
    assert "8 passing conversations reached" in finished.stdout
    assert sum(p for _, p in _passing_by_stratum(db).values()) == 8


def test_estimate_assumes_full_yield_until_the_corpus_has_measured_it(reached, tmp_path):
    config = _config(tmp_path)
    fresh = rapport_in_process(
        "generate", "--db", str(tmp_path / "none.duckdb"), "--config", str(config),
        "--turns", "2", "--until-passing", "100", "--estimate",
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    assert "assumes 100 % yield" in fresh.stdout
    assert "~100 scenarios still to play" in fresh.stdout
    assert not (tmp_path / "none.duckdb").exists()
    db, _, _ = reached
    measured = rapport_in_process(
        "generate", "--db", str(db), "--config", str(config), "--turns", "2",
        "--until-passing", "300", "--estimate",
    )  # fmt: skip
    assert measured.returncode == 0, measured.stderr
    assert "at the yields measured in this corpus" in measured.stdout
    still = int(measured.stdout.split("~")[1].split(" ")[0].replace(",", ""))
    assert still > 300 - 90  # lower yields than 100 %: more to play than what is missing


# ---- resume after kill -9 ------------------------------------------------------------------


def _assessments(db: Path) -> int:
    try:
        with duckdb.connect(str(db), read_only=True) as conn:
            return conn.execute("SELECT count(*) FROM assessments").fetchone()[0]
    except duckdb.Error:  # not created yet, or held by the writer this instant
        return 0


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_to_exactly_the_target(tmp_path):
    """SIGKILL once the first judgements are stored (an event of the run's, not a row count
    racing the writer's batches): the same command again reaches exactly N."""
    db = tmp_path / "corpus.duckdb"
    # slow enough that the run lasts many of the writer's lending periods (lent every 0.3 s
    # below), so the first judgement a reader can see is stored long before the run's end
    slow = "{provider: simulated, latency_ms: 60}"
    config = _config(
        tmp_path,
        f"backends:\n  user_sim: {slow}\n  assistant: {slow}\n",
        "store: {flush_rows: 20, flush_interval_s: 0.05}\n",
    )
    args = ["generate", "--db", str(db), "--config", str(config), "--turns", "3"]
    args += ["--until-passing", "40", "--max-active", "8", "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "rapport", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", "RAPPORT_STORE_LEND_EVERY_S": "0.3"},
    )
    deadline = time.monotonic() + 120
    while _assessments(db) == 0:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "nothing was judged"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = _passing_by_stratum(db)
    assert sum(p for _, p in killed_at.values()) < 40
    with duckdb.connect(str(db), read_only=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM conversations WHERE status <> 'complete' "
            "OR conversation_id NOT IN (SELECT conversation_id FROM conversation_passes)"
        ).fetchone()[0]
    assert left > 0  # conversations in flight at the kill: resumed, or judged, by the next run
    resumed = rapport_in_process(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "40 passing conversations reached" in resumed.stdout
    assert sum(p for _, p in _passing_by_stratum(db).values()) == 40
    with duckdb.connect(str(db), read_only=True) as conn:
        unjudged = conn.execute(
            "SELECT count(*) FROM conversations WHERE status = 'complete' "
            "AND conversation_id NOT IN (SELECT conversation_id FROM conversation_passes)"
        ).fetchone()[0]
    assert unjudged == 0


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:  # one local cluster, as tests/test_ray_workers.py starts it
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024 * 1024,
            log_to_driver=False,
        )
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@pytest.mark.slow
def test_ray_workers_reach_exactly_the_target_with_the_same_admission(ray_cluster, tmp_path):
    """The driver's job stream is the admission: workers play what it admits, and it waits
    for their conversations to be judged without stopping their results from coming in."""
    from rapport.cluster.driver import ClusterRequest, ray_player

    db = tmp_path / "ray.duckdb"
    play = ray_player(ClusterRequest(address=None, workers=2))
    summary = generate(_request(db, _config(tmp_path), 30), play=play)
    assert summary.passing is not None and summary.passing.passing == 30
    assert sum(p for _, p in _passing_by_stratum(db).values()) == 30


def test_a_user_side_judged_failing_does_not_count_and_is_replaced(tmp_path):
    """The pass rule is both sides': a conversation whose simulated user failed its rubric
    (simulator_assessments) no longer counts, and the next run plays another in its place."""
    db, config = tmp_path / "corpus.duckdb", _config(tmp_path)
    generate(_request(db, config, 20))
    with duckdb.connect(str(db)) as conn:
        failed = [
            row[0]
            for row in conn.execute(
                "SELECT conversation_id FROM conversation_passes WHERE passed "
                "ORDER BY conversation_id LIMIT 3"
            ).fetchall()
        ]
        conn.executemany(
            "INSERT INTO simulator_assessments VALUES "
            "(?, 'sim', 0.2, false, false, 0.7, '{}', [], now())",
            [[cid] for cid in failed],
        )
    assert sum(p for _, p in _passing_by_stratum(db).values()) == 17
    again = generate(_request(db, config, 20))
    assert again.passing is not None and again.passing.passing == 20
    assert sum(p for _, p in _passing_by_stratum(db).values()) == 20
    with duckdb.connect(str(db), read_only=True) as conn:
        still_failed = conn.execute(
            "SELECT count(*) FROM conversation_passes WHERE NOT passed "
            "AND list_contains(?, conversation_id)",
            [failed],
        ).fetchone()[0]
    assert still_failed == 3


def test_with_a_simulator_rubric_a_conversation_counts_once_both_sides_are_judged(tmp_path):
    """Therapy judges the user side too: exactly N pass both sides; a conversation whose user
    side is not judged yet (a kill between the two judgements) is not counted, is judged by
    the next run, and counts then."""
    config = tmp_path / "both.yaml"
    role = "{provider: simulated}"
    config.write_text(
        f"backends:\n  user_sim: {role}\n  assistant: {role}\n"
        "judges:\n  - id: sim\n    backend: {provider: simulated, quality: 0.9}\n"
    )
    db = tmp_path / "therapy.duckdb"
    request = GenerateRequest(
        db=db, config=config, count=600, turns=3, max_active=16, judging="configured",
        until_passing=30,
    )  # fmt: skip
    summary = generate(request)
    assert summary.passing is not None and summary.passing.passing == 30
    assert len(summary.passing.strata) == 21  # therapy: 7 topic categories × (2 flaw + none)
    with duckdb.connect(str(db)) as conn:
        judged, both, passing, user_failed = conn.execute(
            "SELECT count(*), count(user_judges), count(*) FILTER (WHERE passed), "
            "(SELECT count(*) FROM simulator_conversation_judgement WHERE NOT passed) "
            "FROM conversation_passes"
        ).fetchone()
        assert judged == both and passing == 30  # every one judged on both sides
        assert user_failed > 0  # the user side's rubric turned some away
        unjudged = [
            row[0]
            for row in conn.execute(
                "SELECT conversation_id FROM conversation_passes WHERE passed "
                "ORDER BY conversation_id LIMIT 3"
            ).fetchall()
        ]
        for table in ("simulator_assessments", "simulator_verdicts"):
            conn.execute(f"DELETE FROM {table} WHERE list_contains(?, conversation_id)", [unjudged])
        counted = stratum_counts(conn, summary.plan_id, 600, both_sides=True)
        waiting = awaiting_judgement(conn, summary.plan_id, 600, both_sides=True)
    assert sum(p for _, p in counted.values()) == 27
    assert set(waiting) == set(unjudged)
    again = generate(request)
    assert again.passing is not None and again.passing.passing == 30
    with duckdb.connect(str(db), read_only=True) as conn:
        rejudged = conn.execute(
            "SELECT count(*) FROM conversation_passes WHERE user_judges IS NOT NULL "
            "AND list_contains(?, conversation_id)",
            [unjudged],
        ).fetchone()[0]
    assert rejudged == 3


def test_the_live_display_shows_the_target_the_yield_and_the_strata_at_quota(tmp_path):
    from rich.console import Console

    from rapport._live_table import progress_table
    from rapport.config.prices import PriceTable

    seen = []

    async def show(run):
        seen.append(run.progress)

    summary = generate(_request(tmp_path / "c.duckdb", _config(tmp_path), 12), display=show)
    (progress,) = seen
    live = progress.passing
    assert live is not None and live.passing == 12 and live.in_flight == 0
    assert live.judged == summary.passing.judged and live.strata_full == 4
    console = Console(width=200, record=True)
    console.print(progress_table(progress, {}, PriceTable({})))
    shown = console.export_text()
    yield_share = f"{live.passed / live.judged:.0%}"
    assert f"12/12 passing · yield {yield_share} ({live.passed} of {live.judged} judged)" in shown
    assert "0 in flight · 4/4 strata at quota" in shown
    assert live.passing_at_start == 0 and live.eta_s(10.0) == 0.0  # reached: nothing left
    live.passing, live.passing_at_start = 3, 1  # two made to pass in 10 s, 9 to go
    assert live.eta_s(10.0) == pytest.approx(45.0)


@pytest.mark.parametrize("domain_dir", [None, "customer_support", TESTS / "domains" / "tiny"])
def test_stratum_weights_match_each_domains_sampling(domain_dir):
    from rapport.config.loader import shipped_domain_dir

    if isinstance(domain_dir, str):
        domain_dir = shipped_domain_dir(domain_dir)
    domain = load_domain(domain_dir)
    weights = stratum_weights(domain)
    assert sum(weights.values()) == pytest.approx(1.0)
    drawn = Counter()
    for index in range(3000):
        scenario = sample_scenario(domain, "p", 9, index)
        primary = next((f.category for f in scenario.flaws if f.role == "primary"), None)
        flaw = primary or (scenario.flaws[0].category if scenario.flaws else "none")
        drawn[stratum_label(scenario.topics[0].category, flaw)] += 1
    assert set(drawn) <= set(weights)
    for stratum, weight in weights.items():
        assert drawn[stratum] / 3000 == pytest.approx(weight, abs=0.03), stratum


def test_a_smaller_target_plays_nothing_and_reports_the_rest_as_surplus(tmp_path):
    db, config = tmp_path / "c.duckdb", _config(tmp_path)
    generate(_request(db, config, 16))
    smaller = generate(_request(db, config, 8, count=160))  # the same part of the plan
    assert smaller.passing is not None and smaller.passing.passing == 8
    assert sum(s.surplus for s in smaller.passing.strata) == 8
    assert smaller.turns_written == 0  # the target was already reached: nothing played


def test_a_judge_that_always_fails_ends_the_run_with_nothing_passing(tmp_path):
    """Every judgement fails (the null backend's reply is no verdict): each conversation's place
    is freed as its judge fails, and the run ends at --count instead of waiting forever."""
    config = tmp_path / "broken.yaml"
    config.write_text(
        f"domain: {STRATA_DOMAIN}\nbackends:\n  user_sim: {{provider: simulated}}\n"
        "  assistant: {provider: simulated}\n"
        "judges:\n  - id: broken\n    backend: {provider: null, reply: 'not a verdict'}\n"
    )
    db = tmp_path / "c.duckdb"
    args = ["generate", "--db", str(db), "--config", str(config), "--turns", "2"]
    result = rapport(*args, "--until-passing", "4", "--count", "12", timeout=120)
    assert result.returncode == 4, result.stderr  # nothing could be done
    (line,) = error_lines(result)
    assert line.startswith("0 of 4 passing conversations: ") and "--count 12" in line
    with duckdb.connect(str(db), read_only=True) as conn:
        played, failures, no_quota = conn.execute(
            "SELECT (SELECT count(*) FROM conversations WHERE status = 'complete'), "
            "(SELECT count(DISTINCT conversation_id) FROM judge_failures), "
            "(SELECT count(*) FROM scenario_strata WHERE stratum = 'drivetrain/none')"
        ).fetchone()
    # Every scenario of the first 12 was played and failed by its judge, but those of
    # drivetrain/none: at N = 4 its quota (0.09 × 4, rounded) is 0.
    assert played == failures == 12 - no_quota
