"""Secrets never reach the database, the terminal, a report or a dataset: a provider (or proxy)
on loopback echoes the API key back, in error bodies of several statuses, in a body that is not
JSON and in a successful reply, and every place Rapport writes text is searched for it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import duckdb
import msgspec
import pytest
from aiohttp import web
from rich.console import Console

from rapport._live_table import progress_table
from rapport.config.backend_settings import OpenAIConfig
from rapport.config.prices import load_prices
from rapport.config.secrets import PATTERNS_ONLY, REDACTED, Redactor, looks_like_secret
from rapport.engine.backends.http_errors import short_message
from rapport.engine.factory import build_gateway, limits_of
from rapport.engine.progress import RunProgress
from rapport.fakes.provider import serving_in_thread
from rapport.store.database import Database
from rapport.store.rows import (
    ErrorRow,
    JudgeFailureRow,
    MessageRow,
    SimulatorCheckRow,
    StoreEvent,
    VerdictRow,
    utc_now,
)
from rapport.store.writer import write_batch
from tests.conftest import TINY_DOMAIN, rapport

MARKER = "TESTSECRET"
OPENAI_KEY = f"sk-proj-{MARKER}0123456789abcdefXYZ"
# A key with no recognisable shape, read through `api_key_env`: only its value gives it away.
PROXY_KEY = f"plain.{MARKER}.proxy-credential-42"
PROXY_KEY_ENV = "RAPPORT_PROXY_CRED"
ANTHROPIC_KEY = f"sk-ant-api03-{MARKER}-0123456789abcdef"
ENV = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY, PROXY_KEY_ENV: PROXY_KEY}


# --- a provider that echoes the key -------------------------------------------------------------


def _presented_key(request: web.Request) -> str:
    authorization = request.headers.get("Authorization", "")
    return authorization.removeprefix("Bearer ") or request.headers.get("x-api-key", "")


async def _echo(request: web.Request) -> web.Response:
    """/json/STATUS/v1/...: a JSON error body quoting the key (bare, without "Bearer") and the
    Authorization header; /text/STATUS/v1/...: the same in a body that is not JSON;
    /reply/v1/...: a successful completion whose text quotes the key."""
    key = _presented_key(request)
    shape = request.match_info["shape"]
    if shape == "reply":
        body = {
            "id": "c-1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"your key is {key}, goodbye"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        }
        return web.json_response(body)
    status = int(request.match_info["status"])
    if shape == "text":
        text = f"<html>proxy refused key {key} (headers: {dict(request.headers)})</html>"
        return web.Response(status=status, text=text, content_type="text/html")
    error = {"message": f"Incorrect API key provided: {key}", "echo": dict(request.headers)}
    return web.json_response({"error": error}, status=status)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    """The echoing provider on loopback, in a background thread; yields its root URL."""
    app = web.Application()
    app.router.add_post("/{shape}/{status}/v1/chat/completions", _echo)
    app.router.add_post("/{shape}/v1/chat/completions", _echo)
    app.router.add_post("/{shape}/{status}/v1/messages", _echo)  # Anthropic: x-api-key
    with serving_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}"


# --- where a leak would show ----------------------------------------------------------------------


def _all_stored_text(db: Path) -> str:
    """Every row of every table and view, as text."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        ]
        return "\n".join(str(conn.execute(f'SELECT * FROM "{name}"').fetchall()) for name in names)
    finally:
        conn.close()


def _assert_no_secret_in_files(*paths: Path) -> None:
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            assert MARKER.encode() not in file.read_bytes(), f"secret in {file}"


def _assert_database_clean(db: Path) -> None:
    _assert_no_secret_in_files(*(p for p in db.parent.glob(db.name + "*")))  # .wal too
    assert MARKER not in _all_stored_text(db)


def _assert_output_clean(result) -> None:
    assert MARKER not in result.stdout, result.stdout
    assert MARKER not in result.stderr, result.stderr


def _backend_yaml(path: Path, base_url: str, **extra: object) -> Path:
    settings = {
        "provider": "openai",
        "model": "m",
        "base_url": base_url,
        "max_retries": 1,
        "backoff_min_s": 0.01,
        "backoff_max_s": 0.02,
        **extra,
    }
    path.write_text(json.dumps(settings), encoding="utf-8")  # JSON is YAML
    return path


def _generate(db: Path, assistant: str, *extra: str):
    return rapport(
        "generate", "--db", str(db), "--count", "2", "--turns", "2",
        "--domain", str(TINY_DOMAIN), "--user-backend", "simulated",
        "--assistant-backend", assistant, "--quiet", *extra,
        env=ENV,
    )  # fmt: skip


# --- the command line, as a user hits it ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "route",
    ["json/401", "json/400", "json/429", "json/500", "text/401", "text/500"],
)
def test_a_key_echoed_in_an_error_body_never_reaches_the_database_or_the_terminal(
    echo_server: str, tmp_path: Path, route: str
) -> None:
    db = tmp_path / "rapport.duckdb"
    # A 429 is backpressure, retried until the gateway has had no success for a while: keep
    # that while short, so the run stops (its conversations interrupted) within the test.
    patience = {"no_success_stop_s": 1} if route == "json/429" else {}
    spec = _backend_yaml(tmp_path / "assistant.yaml", f"{echo_server}/{route}/v1", **patience)
    generated = _generate(db, str(spec))
    _assert_output_clean(generated)
    _assert_database_clean(db)
    conn = duckdb.connect(str(db), read_only=True)
    stored = conn.execute("SELECT count(*), min(message) FROM errors").fetchone()
    stopped = conn.execute(
        "SELECT count(*) FROM conversations WHERE status IN ('failed', 'interrupted')"
    ).fetchone()
    conn.close()
    assert stored[0] >= 1 and stopped[0] == 2  # the provider was really called, and refused
    # The SDK keeps a JSON error body in its message (a 429's is dropped, a non-JSON one too):
    # there the key was about to be stored, and was redacted.
    if route in ("json/401", "json/400", "json/500"):
        assert REDACTED in stored[1]


@pytest.mark.slow
def test_an_anthropic_key_echoed_from_its_x_api_key_header_is_redacted(
    echo_server: str, tmp_path: Path
) -> None:
    db = tmp_path / "rapport.duckdb"
    generated = _generate(db, f"anthropic:m@{echo_server}/json/401")
    _assert_output_clean(generated)
    _assert_database_clean(db)
    conn = duckdb.connect(str(db), read_only=True)
    (message,) = conn.execute("SELECT min(message) FROM errors").fetchone()
    conn.close()
    assert message.startswith("http_401") and REDACTED in message


@pytest.mark.slow
def test_stats_and_sql_show_no_echoed_key(echo_server: str, tmp_path: Path) -> None:
    db = tmp_path / "rapport.duckdb"
    _generate(db, str(_backend_yaml(tmp_path / "a.yaml", f"{echo_server}/json/401/v1")))
    stats = rapport("stats", "--db", str(db), env=ENV)
    errors = rapport("sql", "--db", str(db), "SELECT * FROM errors", env=ENV)
    assert stats.returncode == 0 and errors.returncode == 0, stats.stderr + errors.stderr
    assert REDACTED in errors.stdout
    _assert_output_clean(stats)
    _assert_output_clean(errors)


@pytest.mark.slow
def test_a_judge_whose_provider_echoes_the_key_records_its_failures_redacted(
    echo_server: str, tmp_path: Path
) -> None:
    db = tmp_path / "rapport.duckdb"
    assert _generate(db, "simulated").returncode == 0
    judge_backend = {
        "provider": "openai",
        "model": "m",
        "base_url": f"{echo_server}/json/401/v1",
        "api_key_env": PROXY_KEY_ENV,
        "max_retries": 0,
    }
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"judges": [{"id": "j", "backend": judge_backend}]}))
    judged = rapport("judge", "--db", str(db), "--config", str(config), env=ENV)
    report = rapport("report", "--db", str(db), "--out", str(tmp_path / "report"), env=ENV)
    _assert_output_clean(judged)
    _assert_output_clean(report)
    _assert_database_clean(db)
    _assert_no_secret_in_files(tmp_path / "report")
    conn = duckdb.connect(str(db), read_only=True)
    failures = conn.execute("SELECT error FROM judge_failures").fetchall()
    conn.close()
    # Every call is refused alike, so judging stops after the first few (fail fast, exit 4) with
    # the provider's words, key redacted; any failure stored before the stop is redacted too.
    assert judged.returncode == 4 and REDACTED in judged.stderr, judged.stderr
    assert all(REDACTED in error for (error,) in failures)


@pytest.mark.slow
def test_a_reply_quoting_the_key_is_redacted_in_messages_stats_report_and_dataset(
    echo_server: str, tmp_path: Path
) -> None:
    db = tmp_path / "rapport.duckdb"
    generated = _generate(db, f"openai:m@{echo_server}/reply/v1")
    judged = rapport("judge", "--db", str(db), "--judge", "simulated:quality=1", env=ENV)
    assert judged.returncode == 0, judged.stderr
    outputs = [
        generated,
        judged,
        rapport("stats", "--db", str(db), env=ENV),
        rapport("report", "--db", str(db), "--out", str(tmp_path / "report"), env=ENV),
        rapport(
            "dataset",
            "build",
            "--db",
            str(db),
            "--out",
            str(tmp_path / "data"),
            "--format",
            "jsonl",
            env=ENV,
        ),
    ]
    for result in outputs:
        _assert_output_clean(result)
    _assert_database_clean(db)
    _assert_no_secret_in_files(tmp_path / "report", tmp_path / "data")
    conn = duckdb.connect(str(db), read_only=True)
    replies = conn.execute("SELECT content FROM messages WHERE role = 'assistant'").fetchall()
    conn.close()
    assert replies and all(REDACTED in content for (content,) in replies)
    assert REDACTED in (tmp_path / "data" / "train.jsonl").read_text()


@pytest.mark.slow
def test_a_database_written_before_redaction_is_shown_and_exported_redacted(
    echo_server: str, tmp_path: Path
) -> None:
    db = tmp_path / "rapport.duckdb"
    proxy = _backend_yaml(tmp_path / "a.yaml", f"{echo_server}/reply/v1", api_key_env=PROXY_KEY_ENV)
    assert _generate(db, str(proxy)).returncode == 0
    assert rapport("judge", "--db", str(db), "--judge", "simulated:quality=1").returncode == 0
    conn = duckdb.connect(str(db))  # what an older Rapport stored: the key itself
    conn.execute("UPDATE messages SET content = content || ' ' || ?", [PROXY_KEY])
    conn.execute(
        "INSERT INTO errors VALUES ('r', NULL, NULL, NULL, 'http_401', ?, now())", [OPENAI_KEY]
    )
    conn.close()
    outputs = [
        rapport("stats", "--db", str(db), env=ENV),
        rapport("sql", "--db", str(db), "SELECT * FROM errors", "--format", "json", env=ENV),
        rapport("sql", "--db", str(db), "SELECT content FROM messages", "--format", "csv", env=ENV),
        rapport("report", "--db", str(db), "--out", str(tmp_path / "report"), env=ENV),
        rapport(
            "dataset",
            "build",
            "--db",
            str(db),
            "--out",
            str(tmp_path / "data"),
            "--format",
            "jsonl",
            env=ENV,
        ),
    ]
    for result in outputs:
        assert result.returncode == 0, result.stderr
        _assert_output_clean(result)
    _assert_no_secret_in_files(tmp_path / "report", tmp_path / "data")


@pytest.mark.slow
@pytest.mark.parametrize(
    "base_url",
    [
        "http://proxyuser:{secret}@127.0.0.1:{port}/reply/v1",
        "http://127.0.0.1:{port}/reply/v1?api-key={secret}",
        "http://127.0.0.1:{port}/reply/v1?token={secret}&x=1",
    ],
)
def test_credentials_in_a_base_url_are_redacted_in_runs_and_gateway_stats(
    echo_server: str, tmp_path: Path, base_url: str
) -> None:
    db = tmp_path / "rapport.duckdb"
    port = echo_server.rsplit(":", 1)[1]
    url = base_url.format(secret=PROXY_KEY, port=port)
    generated = _generate(db, str(_backend_yaml(tmp_path / "a.yaml", url, max_retries=0)))
    _assert_output_clean(generated)
    _assert_database_clean(db)
    conn = duckdb.connect(str(db), read_only=True)
    (settings,) = conn.execute("SELECT settings FROM runs").fetchone()
    gateways = [row[0] for row in conn.execute("SELECT gateway FROM gateway_stats").fetchall()]
    conn.close()
    assert REDACTED in json.loads(settings)["backends"]["assistant"]["base_url"]
    assert any(REDACTED in gateway for gateway in gateways)


@pytest.mark.slow
def test_a_key_pasted_as_api_key_env_is_not_printed_back(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    assistant = {"provider": "openai", "model": "m", "api_key_env": OPENAI_KEY}
    config.write_text(json.dumps({"backends": {"assistant": assistant}}))
    result = rapport(
        "generate", "--db", str(tmp_path / "r.duckdb"), "--count", "1",
        "--config", str(config), "--user-backend", "simulated", env=ENV,
    )  # fmt: skip
    assert result.returncode != 0
    assert "backends.assistant.api_key_env" in result.stderr
    _assert_output_clean(result)


def test_the_live_display_shows_endpoints_redacted() -> None:
    settings = OpenAIConfig(
        model="m",
        base_url=f"http://user:{PROXY_KEY}@127.0.0.1:9/v1?api_key={PROXY_KEY}",
        api_key_env=PROXY_KEY_ENV,
    )
    gateway = build_gateway(settings, limits_of(settings), ENV, "run.yaml", "assistant")
    redactor = Redactor.from_environ(ENV, [PROXY_KEY_ENV])
    table = progress_table(RunProgress(total=3), {"assistant": gateway}, load_prices({}), redactor)
    screen = io.StringIO()
    Console(file=screen, width=300).print(table)
    assert MARKER not in screen.getvalue()
    assert "openai:m@http://[REDACTED]@127.0.0.1:9/v1?api_key=[REDACTED]" in screen.getvalue()


def test_the_writer_redacts_every_text_column_a_provider_can_fill(tmp_path: Path) -> None:
    database = Database(tmp_path / "r.duckdb")
    database.initialise()
    now = utc_now()
    leak = f"echo: {PROXY_KEY}"
    event = StoreEvent(
        message=MessageRow("c", 0, "assistant", leak, 1, False, 1, 1, 1.0, "openai", "m", "r", now),
        error=ErrorRow("r", "c", 0, "assistant", "http_401", leak, now),
        verdicts=(VerdictRow("c", "j", "k", "YES", leak, leak, now),),
        judge_failures=(JudgeFailureRow("c", "j", "k2", leak, now),),
        checks=(SimulatorCheckRow("c", 0, "copies_assistant", leak, now),),
    )
    redactor = Redactor.from_environ(ENV, [PROXY_KEY_ENV])
    database.run_sync(lambda conn: write_batch(conn, [event], redactor))
    stored = _all_stored_text(database.path)
    assert MARKER not in stored
    # messages.content, errors.message, verdicts.reasoning and .judge_model, judge_failures.error,
    # simulator_checks.evidence (a user turn's words)
    assert stored.count(f"echo: {REDACTED}") == 6


# --- the redactor ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-abcdefgh12345678 refused", f"key {REDACTED} refused"),
        ("key sk-ant-api03-abcdefgh_123-45 refused", f"key {REDACTED} refused"),
        ("token hf_abcdefghijklmnopqrstuvwxyz", f"token {REDACTED}"),
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {REDACTED}"),
        ("authorization: basic dXNlcjpwYXNzd29yZA==", f"authorization: basic {REDACTED}"),
        ("x-api-key: abcdef0123", f"x-api-key: {REDACTED}"),
        ('{"api_key": "abcdef0123"}', f'{{"api_key": "{REDACTED}"}}'),
        ("password=hunter2222", f"password={REDACTED}"),
    ],
)
def test_each_key_shape_is_redacted(text: str, expected: str) -> None:
    assert PATTERNS_ONLY(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:KEY123@host/v1", f"https://{REDACTED}@host/v1"),
        ("https://KEY123@host/v1", f"https://{REDACTED}@host/v1"),
        ("https://host/v1?api-key=KEY123", f"https://host/v1?api-key={REDACTED}"),
        ("https://host/v1?x=1&api_key=KEY123&y=2", f"https://host/v1?x=1&api_key={REDACTED}&y=2"),
        ("https://host/v1?key=KEY123", f"https://host/v1?key={REDACTED}"),
        ("https://host/v1?access_token=KEY123#f", f"https://host/v1?access_token={REDACTED}#f"),
    ],
)
def test_credentials_in_urls_are_redacted(url: str, expected: str) -> None:
    assert PATTERNS_ONLY(f"cannot reach {url}") == f"cannot reach {expected}"


def test_an_environment_secret_is_redacted_raw_json_escaped_and_url_encoded() -> None:
    secret = 'odd"key\\with/slash+plus=1'
    redactor = Redactor.from_environ({"MY_PROXY": secret}, ["MY_PROXY"])
    texts = [
        f"raw {secret} end",
        json.dumps({"error": {"message": f"bad key {secret}"}}),
        json.dumps({"error": secret}).replace("/", "\\/"),
        msgspec.json.encode({"echo": secret}).decode(),
        f"https://host/v1?k={quote(secret, safe='')}",
    ]
    for text in texts:
        redacted = redactor(text)
        assert "odd" not in redacted and REDACTED in redacted, redacted


def test_an_environment_secret_cut_by_a_length_limit_is_redacted() -> None:
    redactor = Redactor.from_environ({PROXY_KEY_ENV: PROXY_KEY}, [PROXY_KEY_ENV])
    message = short_message(f"{'x' * 280} key {PROXY_KEY} refused", limit=300)
    assert redactor(message) == f"{'x' * 280} key {REDACTED}…"


def test_the_api_key_env_variables_of_a_run_are_read_as_secrets() -> None:
    environ = {"CORP_GATEWAY": "opaque-value-123", "OTHER": "opaque-value-456"}
    redactor = Redactor.from_environ(environ, ["CORP_GATEWAY"])
    assert redactor("a opaque-value-123 b opaque-value-456") == f"a {REDACTED} b opaque-value-456"


def test_variables_named_like_secrets_and_hf_token_are_read_as_secrets() -> None:
    environ = {"HF_TOKEN": "hf-looking-but-not", "SERVICE_PASSWORD": "letmein-please"}
    redactor = Redactor.from_environ(environ)
    assert redactor("hf-looking-but-not / letmein-please") == f"{REDACTED} / {REDACTED}"


def test_short_environment_values_are_not_treated_as_secrets() -> None:
    redactor = Redactor.from_environ({"DEBUG_TOKEN": "1", "OPENAI_API_KEY": "abc"})
    assert redactor("retry 1 of abc") == "retry 1 of abc"


def test_ordinary_text_is_left_alone() -> None:
    text = (
        "The key point: max_tokens: 400, completion_tokens=12, token budget; use sk-learn. "
        "See https://example.com/docs?page=2 and a basic idea."
    )
    assert PATTERNS_ONLY(text) == text


@pytest.mark.parametrize(
    ("value", "secret"),
    [("OPENAI_API_KEY", False), ("MY_KEY_2", False), (OPENAI_KEY, True), (PROXY_KEY, True)],
)
def test_a_key_pasted_into_api_key_env_is_told_from_a_variable_name(
    value: str, secret: bool
) -> None:
    assert looks_like_secret(value) is secret
