"""Several endpoints behind one backend (`replicas:`): real OpenAI SDK calls to fake providers
on loopback. Calls spread over the replicas by load; a replica that is down is taken out and
comes back when it answers; one replica's 429 moves calls to another instead of pausing the
backend; each replica keeps its own limits and its own `gateway_stats` row; keys come from
the variables the config names and never reach the database."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import duckdb
import pytest
import yaml

from rapport.config.backend_settings import OpenAIConfig, Replica
from rapport.config.errors import ConfigError
from rapport.config.run import load_run_config
from rapport.engine.factory import build_gateway, limits_of
from rapport.engine.gateway import Gateway
from rapport.engine.replicas import ReplicaSet
from rapport.engine.types import ChatMessage, CompletionParams
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from tests.conftest import rapport_in_process

PROMPT = [ChatMessage("system", "be brief"), ChatMessage("user", "hello there")]
PARAMS = CompletionParams(max_tokens=20, temperature=0.0)


def _gateway(tiny, settings: OpenAIConfig, environ: dict[str, str] | None = None) -> Gateway:
    return build_gateway(
        settings, limits_of(settings), environ or {}, "run.yaml", "backends.assistant"
    )


def _calls(gateway: Gateway, count: int, concurrent: int) -> list[str]:
    async def main() -> list[str]:
        texts: list[str] = []
        limiter = anyio.Semaphore(concurrent)

        async def one() -> None:
            async with limiter:
                texts.append((await gateway.complete(PROMPT, PARAMS)).text)

        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
        await gateway.aclose()
        return texts

    return anyio.run(main)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_calls_spread_over_replicas_within_each_cap(tiny):
    slow = FakeProviderSettings(latency_ms=30, latency_sigma=0.0)
    with (
        running_fake_provider(slow) as (first_url, first),
        running_fake_provider(slow) as (second_url, second),
        running_fake_provider(slow) as (third_url, third),
    ):
        settings = OpenAIConfig(
            model="m",
            replicas=tuple(
                Replica(base_url=u, max_in_flight=2) for u in (first_url, second_url, third_url)
            ),
        )
        gateway = _gateway(tiny, settings)
        texts = _calls(gateway, 30, concurrent=6)
    assert len(texts) == 30
    served = [state.completed for state in (first, second, third)]
    assert sum(served) == 30
    assert min(served) >= 6  # least-loaded: none idles while another queues
    replica_set = gateway.backend
    assert isinstance(replica_set, ReplicaSet)
    assert [r.stats.succeeded for r in replica_set.replicas] == served
    assert gateway.stats.rate_limited == 0


def test_a_replica_that_is_down_is_taken_out_and_comes_back_when_it_answers(tiny):
    port = _free_port()
    down_url = f"http://127.0.0.1:{port}/v1"
    with running_fake_provider() as (up_url, up):
        settings = OpenAIConfig(
            model="m",
            max_retries=2,
            replicas=(Replica(base_url=down_url), Replica(base_url=up_url)),
        )
        gateway = _gateway(tiny, settings)
        replica_set = gateway.backend
        assert isinstance(replica_set, ReplicaSet)
        down = replica_set.replicas[0]

        async def main() -> tuple[int, int, int, int]:
            for _ in range(10):  # no call fails: the up replica answers each
                await gateway.complete(PROMPT, PARAMS)
            seen = (
                up.completed,
                down.stats.taken_out,
                down.stats.succeeded,
                down.failures_in_a_row,
            )
            with running_fake_provider(port=port) as (_, back):
                with anyio.fail_after(30):  # its backoff is a few seconds at most here
                    while back.completed == 0:
                        await gateway.complete(PROMPT, PARAMS)
                        await anyio.sleep(0.05)
            await gateway.aclose()
            return seen

        completed, taken_out, succeeded, failures = anyio.run(main)
    assert completed == 10
    assert taken_out >= 1 and succeeded == 0 and failures >= 1
    assert down.stats.succeeded >= 1
    assert down.failures_in_a_row == 0 and down.unavailable_until == 0.0
    assert gateway.stats.failed == 0


def test_a_429_from_one_replica_moves_the_call_without_pausing_the_backend(tiny):
    limited = FakeProviderSettings(rate_limit_first=5, retry_after_ms=60_000)
    with (
        running_fake_provider(limited) as (limited_url, limited_state),
        running_fake_provider() as (free_url, free_state),
    ):
        settings = OpenAIConfig(
            model="m", replicas=(Replica(base_url=limited_url), Replica(base_url=free_url))
        )
        gateway = _gateway(tiny, settings)
        texts = _calls(gateway, 8, concurrent=1)
    assert len(texts) == 8
    assert gateway.stats.rate_limited == 0  # the backend as a whole was never paused
    assert gateway.stats.failed == 0
    limited_replica = gateway.backend.replicas[0]  # type: ignore[attr-defined]
    assert limited_replica.stats.rate_limited == limited_state.injected_429 == 1
    assert free_state.completed == 8  # the limited one stays paused for its minute


def test_every_replica_answering_429_is_backpressure_for_the_backend(tiny):
    limited = FakeProviderSettings(rate_limit_first=1, retry_after_ms=50)
    with (
        running_fake_provider(limited) as (first_url, _),
        running_fake_provider(limited) as (second_url, _),
    ):
        settings = OpenAIConfig(
            model="m", replicas=(Replica(base_url=first_url), Replica(base_url=second_url))
        )
        gateway = _gateway(tiny, settings)
        texts = _calls(gateway, 3, concurrent=1)
    assert len(texts) == 3  # retried after the shortest wait, as after any 429
    assert gateway.stats.rate_limited == 1 and gateway.stats.failed == 0


def test_each_replica_keeps_its_own_request_budget(tiny):
    settings = OpenAIConfig(
        model="m",
        base_url="http://127.0.0.1:9/v1",
        replicas=(Replica(rpm=60), Replica(base_url="http://127.0.0.1:8/v1", rpm=600)),
    )
    replica_set = _gateway(tiny, settings).backend
    assert isinstance(replica_set, ReplicaSet)
    budgets = [r.admission.budgets["requests"].per_minute for r in replica_set.replicas]
    assert budgets == [60, 600]
    assert [r.name for r in replica_set.replicas] == [
        "http://127.0.0.1:9/v1",
        "http://127.0.0.1:8/v1",
    ]


def test_two_keys_of_one_provider_are_two_replicas_and_no_key_is_stored(tmp_path: Path, tiny):
    keys = {"KEY_ONE": "sk-first-secret-value-1234", "KEY_TWO": "sk-second-secret-value-5678"}
    with running_fake_provider() as (url, state):
        config = tmp_path / "run.yaml"
        replicas = [{"api_key_env": name} for name in keys]
        backend = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "base_url": url,
            "replicas": replicas,
        }
        config.write_text(yaml.safe_dump({"backends": {"user_sim": backend, "assistant": backend}}))
        db = tmp_path / "corpus.duckdb"
        result = rapport_in_process(
            "generate", "--db", str(db), "--count", "4", "--turns", "2", "--config", str(config),
            "--quiet", env=keys,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert {f"Bearer {value}" for value in keys.values()} <= state.authorization
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "SELECT gateway, endpoint, requests FROM gateway_stats ORDER BY gateway"
        ).fetchall()
        dump = str(conn.execute("SELECT * FROM gateway_stats").fetchall())
        dump += str(conn.execute("SELECT * FROM runs").fetchall())
    whole = [row for row in rows if row[1] is None]
    per_key = [row for row in rows if row[1] is not None]
    assert len(whole) == 1
    assert sorted(row[1] for row in per_key) == [f"{url} key:KEY_ONE", f"{url} key:KEY_TWO"]
    assert sum(row[2] for row in per_key) == whole[0][2] == 16
    for value in keys.values():
        assert value not in dump


def test_replicas_naming_the_same_endpoint_twice_are_refused(tmp_path: Path):
    config = tmp_path / "run.yaml"
    backend = {
        "provider": "openai",
        "model": "m",
        "replicas": [{"base_url": "http://127.0.0.1:9/v1"}, {"base_url": "http://127.0.0.1:9/v1"}],
    }
    config.write_text(yaml.safe_dump({"backends": {"assistant": backend}}))
    with pytest.raises(ConfigError, match="two replicas name the same base_url"):
        load_run_config(config)
    result = rapport_in_process(
        "generate", "--db", str(tmp_path / "x.duckdb"), "--count", "1", "--config", str(config)
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_a_replica_whose_key_variable_is_unset_is_named(tiny):
    settings = OpenAIConfig(
        model="m", replicas=(Replica(api_key_env="SET_KEY"), Replica(api_key_env="UNSET_KEY"))
    )
    with pytest.raises(ConfigError, match=r"backends\.assistant\.replicas\[1\].*UNSET_KEY"):
        _gateway(tiny, settings, {"SET_KEY": "sk-abc"})
