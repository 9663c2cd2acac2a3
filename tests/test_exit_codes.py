"""Exit codes scripts can trust, as a user meets them: 0 when everything asked for is done, 3
(with one summary line) when some work failed, 4 when nothing could be done, and a provider
that refuses every call stops the run after a few calls."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from rapport.cli.exit_codes import NOTHING_DONE, OK, PARTIAL, outcome
from rapport.config.constants import FAIL_FAST_AFTER_CALLS
from rapport.engine.errors import BackendError
from rapport.engine.fail_fast import FailFast, GatewayRefusing
from tests.conftest import TINY_DOMAIN, rapport

KEY_ENV = "RAPPORT_EXIT_KEY"


class _Refusing(BaseHTTPRequestHandler):
    """Answers 401 to every request, as a provider does for a wrong API key."""

    requests = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        with self.lock:
            type(self).requests += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"error": {"message": "Incorrect API key provided"}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


@contextmanager
def _refusing_provider() -> Iterator[tuple[str, type[_Refusing]]]:
    handler = type("Refusing", (_Refusing,), {"requests": 0, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    finally:
        server.shutdown()
        server.server_close()


def _statuses(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall()
    return dict(rows)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _corpus(tmp_path: Path, count: int = 3) -> Path:
    db = tmp_path / "corpus.duckdb"
    made = rapport(
        "generate", "--db", str(db), "--count", str(count), "--turns", "1",
        "--domain", str(TINY_DOMAIN), "--backend", "simulated", "--quiet",
    )  # fmt: skip
    assert made.returncode == OK, made.stderr
    return db


@pytest.mark.slow
def test_a_run_where_everything_is_done_exits_0(tmp_path):
    db = tmp_path / "good.duckdb"
    result = rapport(
        "generate", "--db", str(db), "--count", "4", "--turns", "1", "--backend", "simulated",
        "--quiet",
    )  # fmt: skip
    assert result.returncode == OK, result.stderr
    assert "failed" not in result.stderr


@pytest.mark.slow
def test_a_provider_refusing_every_call_stops_after_a_few_calls_with_exit_4(tmp_path):
    db = tmp_path / "refused.duckdb"
    with _refusing_provider() as (base_url, server):
        result = rapport(
            "generate", "--db", str(db), "--count", "51", "--turns", "2", "--max-active", "2",
            "--backend", f"openai:some-model@{base_url}", "--quiet",
            env={"OPENAI_API_KEY": "sk-wrong"},
        )  # fmt: skip
    assert result.returncode == NOTHING_DONE, result.stdout + result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "openai:some-model" in lines[0] and "http_401" in lines[0]
    assert "run the same command again" in lines[0]
    # A few calls, not one per planned conversation (51 of them).
    assert FAIL_FAST_AFTER_CALLS <= server.requests <= FAIL_FAST_AFTER_CALLS + 2
    statuses = _statuses(db)
    assert "running" not in statuses and "complete" not in statuses
    assert sum(statuses.values()) == 51  # the plan is kept: the next run retries all of it


@pytest.mark.slow
def test_some_conversations_failing_exits_3_with_a_one_line_summary(tmp_path):
    # An assistant CLI that fails every second call, never retried: half the conversations fail.
    script = tmp_path / "flaky.sh"
    script.write_text(
        'cat > /dev/null\nn=$(( $(cat "$1" 2>/dev/null || echo 0) + 1 ))\necho "$n" > "$1"\n'
        'if [ $((n % 2)) -eq 0 ]; then echo "quota exceeded" >&2; exit 1; fi\n'
        'echo "That sounds hard. What would help most right now?"\n'
    )
    config = tmp_path / "run.yaml"
    config.write_text(
        "backends:\n  user_sim: {provider: simulated}\n"
        f"  assistant: {{provider: command, command: [sh, '{script}', '{tmp_path / 'n'}'], "
        "max_retries: 0}\n"
    )
    db = tmp_path / "flaky.duckdb"
    result = rapport(
        "generate", "--db", str(db), "--count", "6", "--turns", "1", "--max-active", "1",
        "--config", str(config), "--quiet",
    )  # fmt: skip
    assert result.returncode == PARTIAL, result.stdout + result.stderr
    assert _lines(result.stderr) == [
        "3 of 6 conversations failed: run the same command again to retry them"
    ]
    assert _statuses(db) == {"complete": 3, "failed": 3}


@pytest.mark.slow
def test_a_judge_whose_every_answer_is_unusable_exits_4(tmp_path):
    db = _corpus(tmp_path)
    result = rapport("judge", "--db", str(db), "--judge", "command:echo no idea")
    assert result.returncode == NOTHING_DONE, result.stdout + result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1 and "criteria failed" in lines[0], result.stderr
    failed, asked = lines[0].split(" criteria failed")[0].split(" of ")
    assert failed == asked and int(asked) > 0


@pytest.mark.slow
def test_a_judge_that_cannot_run_stops_judging_with_one_line(tmp_path):
    db = _corpus(tmp_path)
    result = rapport("judge", "--db", str(db), "--judge", "command:/nonexistent/judge-cli")
    assert result.returncode == NOTHING_DONE, result.stdout + result.stderr
    lines = _lines(result.stderr)
    assert len(lines) == 1 and "command_not_found" in lines[0], result.stderr
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM assessments").fetchone() == (0,)


@pytest.mark.slow
def test_an_eval_whose_candidate_always_fails_exits_4(tmp_path):
    candidate = tmp_path / "broken.yaml"
    candidate.write_text(
        "{provider: command, command: [sh, -c, 'cat > /dev/null; exit 1'], max_retries: 0}\n"
    )
    db = tmp_path / "eval.duckdb"
    result = rapport(
        "eval", "--db", str(db), "--scenarios", "3", "--turns", "1",
        "--domain", str(TINY_DOMAIN), "--user-backend", "simulated", "--judges", "simulated",
        "--baseline", "simulated", "--candidate", str(candidate), "--out", str(tmp_path / "r"),
        "--quiet",
    )  # fmt: skip
    assert result.returncode == NOTHING_DONE, result.stdout + result.stderr
    assert _lines(result.stderr) == [
        "candidate: 3 of 3 conversations not judged (3 failed): "
        "run the same command again to retry them"
    ]


@pytest.mark.slow
def test_an_iteration_whose_assistant_always_fails_exits_4(tmp_path):
    domain = tmp_path / "bikes"
    shutil.copytree(TINY_DOMAIN, domain)
    assistant = tmp_path / "broken.yaml"
    assistant.write_text(
        "{provider: command, command: [sh, -c, 'cat > /dev/null; exit 1'], max_retries: 0}\n"
    )
    result = rapport(
        "iterate", "--domain", str(domain), "--count", "3", "--turns", "1",
        "--user-backend", "simulated", "--assistant-backend", str(assistant),
        "--judge", "simulated",
    )  # fmt: skip
    assert result.returncode == NOTHING_DONE, result.stdout + result.stderr
    assert _lines(result.stderr) == [
        "3 of 3 conversations failed: run the same command again to retry them"
    ]


def _refused(kind: str = "http_401") -> BackendError:
    return BackendError(kind, "Incorrect API key provided", retryable=False)


def test_fail_fast_stops_at_the_nth_identical_refusal():
    watch = FailFast("openai:m", after=3)
    watch.record(_refused(), succeeded=0)
    watch.record(_refused(), succeeded=0)
    with pytest.raises(GatewayRefusing, match="first 3 calls all failed with http_401"):
        watch.record(_refused(), succeeded=0)


def test_fail_fast_never_fires_once_the_gateway_has_worked():
    watch = FailFast("openai:m", after=2)
    for _ in range(5):
        watch.record(_refused(), succeeded=1)


def test_fail_fast_needs_the_same_non_retryable_error_in_a_row():
    watch = FailFast("openai:m", after=2)
    watch.record(_refused("http_401"), succeeded=0)
    watch.record(_refused("http_404"), succeeded=0)
    watch.record(BackendError("http_500", "boom", retryable=True), succeeded=0)
    watch.record(_refused("http_404"), succeeded=0)
    with pytest.raises(GatewayRefusing):
        watch.record(_refused("http_404"), succeeded=0)


def test_the_outcome_of_a_run_counts_what_is_done():
    assert outcome((51, 51)) == OK
    assert outcome((48, 51)) == PARTIAL
    assert outcome((0, 51)) == NOTHING_DONE
    assert outcome((0, 0)) == OK


@pytest.mark.parametrize(
    ("parts", "expected"),
    [(((3, 3), (9, 9)), OK), (((3, 3), (0, 9)), PARTIAL), (((0, 3), (0, 0)), NOTHING_DONE),
     (((0, 3), (0, 9)), NOTHING_DONE), (((0, 3), (9, 9)), PARTIAL)],
)  # fmt: skip
def test_a_command_of_several_parts_exits_with_their_combined_code(parts, expected):
    assert outcome(*parts) == expected
