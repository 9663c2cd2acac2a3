"""`rapport generate --ray`: a plan played by Ray worker actors into one corpus, under one
global rate budget, through a killed worker and a killed driver. One local cluster (2 CPUs)
serves every test here; the one without Ray needs none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import duckdb
import msgspec
import pytest

from rapport.config.exception_groups import first_leaf
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.stages.generate import GenerateRequest, generate
from rapport.store.database import connect
from tests.conftest import error_lines, rapport

CORPUS = "SELECT conversation_id, turn_index, role, content FROM messages ORDER BY 1, 2"
KEY_ENV = "RAPPORT_RAY_TEST_KEY"


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _player(workers: int, players: list | None = None):
    from rapport.cluster.driver import ClusterRequest, ray_player

    build = ray_player(ClusterRequest(address=None, workers=workers))

    def kept(generation):
        player = build(generation)
        if players is not None:
            players.append(player)
        return player

    return kept


def _corpus(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(CORPUS).fetchall()


def _statuses(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return dict(
            conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
        )


def _simulated(tmp_path: Path, latency_ms: float) -> Path:
    config = tmp_path / "simulated.yaml"
    role = f"{{provider: simulated, latency_ms: {latency_ms}}}"
    config.write_text(f"backends:\n  user_sim: {role}\n  assistant: {role}\n")
    return config


@pytest.mark.slow
@pytest.mark.serial  # a Ray cluster of its own: two on two cores starve each other
def test_two_workers_play_the_same_corpus_as_one_process(ray_address, tmp_path):
    request = GenerateRequest(db=tmp_path / "ray.duckdb", count=24, seed=5, backend="simulated")
    summary = generate(request, play=_player(2))
    reference = msgspec.structs.replace(request, db=tmp_path / "one.duckdb")
    generate(reference)
    assert summary.complete == 24
    assert summary.turns_written == len(_corpus(reference.db))
    assert _corpus(request.db) == _corpus(reference.db)
    with duckdb.connect(str(request.db), read_only=True) as conn:  # one run, both roles' stats
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        requests = conn.execute("SELECT sum(requests) FROM gateway_stats").fetchone()[0]
    assert requests == summary.turns_written


@pytest.mark.slow
@pytest.mark.serial  # a Ray cluster of its own: two on two cores starve each other
def test_two_workers_share_one_rate_limit(ray_address, tmp_path, monkeypatch):
    rpm = 1_200
    monkeypatch.setenv(KEY_ENV, "test-key")
    with running_fake_provider(FakeProviderSettings(rpm=rpm)) as (base_url, state):
        config = tmp_path / "limited.yaml"
        role = (
            f"{{provider: openai, model: fake-model, base_url: '{base_url}', "
            f"api_key_env: {KEY_ENV}, rpm: {rpm}, max_tokens: 40}}"
        )
        config.write_text(f"backends:\n  user_sim: {role}\n  assistant: {role}\n")
        request = GenerateRequest(
            db=tmp_path / "limited.duckdb", count=40, seed=1, config=config, turns=2, max_active=40
        )
        summary = generate(request, play=_player(2))
        served = sorted(state.completed_at)
    assert summary.complete == 40
    assert len(served) == 160  # 40 conversations × 2 exchanges × 2 roles, nothing repeated
    # Each worker alone would take the whole limit (twice the limit together); held to one
    # limit, the provider never refuses a call, and no 2-second window serves more than the
    # limit allows plus its one-second burst.
    assert state.rate_limited <= 2
    window, allowed = 2.0, rpm / 60 * 2.0 + rpm / 60
    busiest = max(
        sum(1 for t in served[i:] if t - start < window) for i, start in enumerate(served)
    )
    assert busiest <= allowed


@pytest.mark.slow
@pytest.mark.serial  # a Ray cluster of its own: two on two cores starve each other
def test_a_killed_worker_loses_and_doubles_nothing(ray_address, tmp_path):
    import ray

    config = _simulated(tmp_path, latency_ms=20)
    request = GenerateRequest(
        db=tmp_path / "killed.duckdb", count=40, seed=7, config=config, turns=4, max_active=20
    )
    players: list = []
    seen: list = []

    async def watch(run) -> None:
        seen.append(run.progress)
        await anyio.sleep_forever()

    def kill_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if seen and seen[0].turns >= 60:
                ray.kill(ray.get_actor(players[0].actor_names[0]))
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    summary = generate(request, display=watch, play=_player(2, players))
    killer.join()
    assert players[0].lost_workers == 1
    conversations, carried_turns = players[0].requeued
    assert conversations > 0 and carried_turns > 0  # half-played ones went on from their turns
    assert summary.complete == 40 and summary.failed == 0
    reference = msgspec.structs.replace(request, db=tmp_path / "one.duckdb", config=None)
    generate(msgspec.structs.replace(reference, backend="simulated"))
    assert _corpus(request.db) == _corpus(reference.db)  # every turn once, same contents
    with duckdb.connect(str(request.db), read_only=True) as conn:
        mismatched = conn.execute(
            "SELECT count(*) FROM conversations c WHERE num_messages <> "
            "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.conversation_id)"
        ).fetchone()
    assert mismatched == (0,)


def _generate_argv(db: Path, config: Path, address: str) -> list[str]:
    return [
        sys.executable, "-m", "rapport", "generate", "--db", str(db), "--count", "200",
        "--seed", "9", "--config", str(config), "--turns", "4", "--max-active", "10",
        "--quiet", "--ray", address, "--workers", "2",
    ]  # fmt: skip


def _complete(db: Path) -> int:
    """Conversations complete so far, read as any reader does while the run writes (it lends the file)."""
    if not db.exists():
        return 0
    conn = connect(db, read_only=True)
    try:
        return conn.execute(
            "SELECT count(*) FROM conversations WHERE status = 'complete'"
        ).fetchone()[0]
    except duckdb.CatalogException:
        return 0
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.serial  # a Ray cluster of its own: two on two cores starve each other
def test_a_killed_driver_resumes_with_the_same_command(ray_address, tmp_path):
    config = _simulated(tmp_path, latency_ms=50)
    db = tmp_path / "driver.duckdb"
    argv = _generate_argv(db, config, ray_address)
    driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _complete(db) == 0:  # killed once a conversation is complete: mid-run, whatever the batch
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert 0 < _statuses(db).get("complete", 0) < 200

    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "one.duckdb"
    generate(GenerateRequest(db=reference, count=200, seed=9, backend="simulated", turns=4))
    assert _corpus(db) == _corpus(reference)
    assert _statuses(db) == {"complete": 200}


def test_ray_not_installed_is_one_line_and_exit_2(tmp_path):
    blocked = (
        "import sys; sys.modules['ray'] = None; "  # `import ray` now raises ImportError
        "from rapport.cli.main import run; run()"
    )
    db = str(tmp_path / "x.duckdb")
    result = subprocess.run(
        [sys.executable, "-c", blocked, "generate", "--db", db, "--count", "2", "--ray"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "install rapport[ray]" in lines[0], lines
    assert not Path(db).exists()  # refused before anything was done


def test_the_cli_never_imports_ray_unless_asked():
    check = "import sys, rapport.cli.main, rapport.bench.scale; assert 'ray' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.serial  # a Ray cluster of its own: two on two cores starve each other
def test_a_provider_down_in_the_workers_stops_the_run_as_in_one_process(
    ray_address, tmp_path, monkeypatch
):
    from rapport.engine.errors import ProviderUnusable

    monkeypatch.setenv("X_KEY", "k")  # the workers' environment
    config = tmp_path / "down.yaml"
    role = "{provider: openai, model: m, base_url: 'http://127.0.0.1:9/v1', api_key_env: X_KEY}"
    config.write_text(f"backends:\n  user_sim: {role}\n  assistant: {role}\n")
    request = GenerateRequest(db=tmp_path / "down.duckdb", count=4, config=config, turns=2)
    with pytest.raises(BaseExceptionGroup) as raised:
        generate(request, environ={"X_KEY": "k"}, play=_player(2))
    stop = raised.value.subgroup(ProviderUnusable)
    assert stop is not None
    leaf = first_leaf(stop)
    assert getattr(leaf, "kind", None) == "connection" and "cannot reach the provider" in str(leaf)
    assert _statuses(request.db) == {"interrupted": 4}  # resumed by the next run


def test_a_cluster_nobody_answers_at_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("ray")
    db = tmp_path / "x.duckdb"
    result = rapport(
        "generate", "--db", str(db), "--count", "2", "--backend", "simulated",
        "--ray", "127.0.0.1:1",
    )  # fmt: skip
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "nothing answers at 127.0.0.1:1" in lines[0], lines
    assert not db.exists()  # refused before anything was written
