"""`rapport generate` and `rapport judge` with the anthropic backend, as a user runs them: the
command line, the real `anthropic` SDK, the fake provider's Messages API on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from rapport.config.loader import load_domain
from rapport.fakes.provider import (
    FakeProviderSettings,
    FakeProviderState,
    running_fake_provider,
)
from rapport.judges.scoring import active_criteria
from tests.conftest import TINY_DOMAIN, rapport

pytestmark = pytest.mark.slow

KEY = {"ANTHROPIC_API_KEY": "sk-ant-end-to-end-5f3a"}
MESSAGES_PATH = "/v1/messages"
CONVERSATIONS, EXCHANGES = 3, 2
# A per-criterion judge makes one call per criterion that applies at this length.
JUDGE_CALLS = CONVERSATIONS * len(active_criteria(load_domain(TINY_DOMAIN).rubric, EXCHANGES))
YES = json.dumps({"reasoning": "Turn 2 answers what the user raised.", "answer": "YES"})
JUDGE_PROVIDER = FakeProviderSettings(replies=(YES,))  # every reply a valid verdict


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _root(base_url: str) -> str:
    """The SDK appends `/v1/messages` itself."""
    return base_url.removesuffix("/v1")


def _only_messages_api(state: FakeProviderState, calls: int) -> None:
    assert state.endpoints == {MESSAGES_PATH: calls}
    assert state.completed == calls
    # the key from ANTHROPIC_API_KEY (as x-api-key, or as a bearer token by anthropic 2.x)
    assert {key.removeprefix("Bearer ") for key in state.authorization} == set(KEY.values())


def _generate(db: Path, *args: str) -> None:
    result = rapport(
        "generate", "--db", str(db), "--count", str(CONVERSATIONS), "--turns", str(EXCHANGES),
        "--domain", str(TINY_DOMAIN), "--quiet", *args, env=KEY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_generate_plays_both_roles_through_the_messages_api(db_path):
    with running_fake_provider() as (base_url, state):
        _generate(db_path, "--backend", f"anthropic:claude-e2e@{_root(base_url)}")
    turns = CONVERSATIONS * EXCHANGES * 2
    _only_messages_api(state, turns)
    assert state.models == {"claude-e2e"}
    assert _rows(
        db_path, "SELECT status, num_messages, count(*) FROM conversations GROUP BY ALL"
    ) == [("complete", EXCHANGES * 2, CONVERSATIONS)]
    assert _rows(db_path, "SELECT backend, model, count(*) FROM messages GROUP BY ALL") == [
        ("anthropic", "claude-e2e", turns)
    ]
    assert _rows(db_path, "SELECT count(*) FROM messages WHERE completion_tokens > 0") == [(turns,)]


def test_judge_assesses_the_corpus_through_the_messages_api(db_path):
    _generate(db_path, "--backend", "simulated")
    with running_fake_provider(JUDGE_PROVIDER) as (base_url, state):
        spec = f"anthropic:claude-judge-e2e@{_root(base_url)}"
        result = rapport("judge", "--db", str(db_path), "--judge", spec, env=KEY)
        assert result.returncode == 0, result.stderr
    _only_messages_api(state, JUDGE_CALLS)
    assert state.models == {"claude-judge-e2e"}
    assert _rows(
        db_path, "SELECT judge_id, judge_model, answer, count(*) FROM verdicts GROUP BY ALL"
    ) == [("anthropic:claude-judge-e2e", "anthropic:claude-judge-e2e", "YES", JUDGE_CALLS)]
    assert _rows(
        db_path, "SELECT judge_id, score, passed, count(*) FROM assessments GROUP BY ALL"
    ) == [("anthropic:claude-judge-e2e", 1.0, True, CONVERSATIONS)]
    assert _rows(db_path, "SELECT count(*) FROM judge_failures") == [(0,)]


def test_a_run_config_of_anthropic_roles_and_judge_generates_and_judges(tmp_path, db_path):
    with (
        running_fake_provider() as (roles_url, roles),
        running_fake_provider(JUDGE_PROVIDER) as (judge_url, judge),
    ):

        def anthropic(model: str, base_url: str) -> dict[str, str]:
            return {"provider": "anthropic", "model": model, "base_url": _root(base_url)}

        config = tmp_path / "run.yaml"
        settings = {
            "backends": {
                "user_sim": anthropic("claude-user", roles_url),
                "assistant": anthropic("claude-assistant", roles_url),
            },
            "judges": [{"id": "claude-judge", "backend": anthropic("claude-verdicts", judge_url)}],
        }
        config.write_text(json.dumps(settings))  # JSON is YAML
        _generate(db_path, "--config", str(config))
    _only_messages_api(roles, CONVERSATIONS * EXCHANGES * 2)
    _only_messages_api(judge, JUDGE_CALLS)
    assert roles.models == {"claude-user", "claude-assistant"}
    assert _rows(
        db_path, "SELECT role, backend, model, count(*) FROM messages GROUP BY ALL ORDER BY 1"
    ) == [
        ("assistant", "anthropic", "claude-assistant", CONVERSATIONS * EXCHANGES),
        ("user", "anthropic", "claude-user", CONVERSATIONS * EXCHANGES),
    ]
    assert _rows(db_path, "SELECT judge_id, passed, count(*) FROM assessments GROUP BY ALL") == [
        ("claude-judge", True, CONVERSATIONS)
    ]
