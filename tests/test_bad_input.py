"""Bad input as a careless user types it: one line naming the culprit, a non-zero exit, never a
traceback, and nothing stored changed. Most commands run in process through the console-script
entry (`cli.main.run`); only what needs a process of its own (a file-size limit, a server)
starts one."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
import typer.main

from rapport.agents.prompts import user_simulator_prompt
from rapport.cli.main import app
from rapport.config import constants
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.errors import ConfigError
from rapport.config.loader import load_domain
from rapport.engine.backends.llamacpp_backend import embedded_model_path
from rapport.engine.plan import sample_scenario
from rapport.stages.generate import GenerateRequest, generate
from rapport.stages.judge import JudgeRequest, judge_corpus
from rapport.training.dataset_build import DatasetRequest, build_dataset
from tests.conftest import TINY_DOMAIN, error_lines, rapport_in_process

BEYOND_64_BITS = str(2**64)


def assert_one_line_error(outcome: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert outcome.returncode == 2, outcome
    assert "Traceback" not in outcome.stderr
    assert len(error_lines(outcome)) == 1, outcome.stderr
    for fragment in fragments:
        assert fragment in error_lines(outcome)[0], (fragment, outcome.stderr)


def assert_refused_by_usage(outcome: subprocess.CompletedProcess[str], option: str) -> None:
    """typer's own check of an option's type or range: exit 2, the option named."""
    assert outcome.returncode == 2, outcome
    assert "Traceback" not in outcome.stderr
    assert option in outcome.stderr, outcome.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("bad-input") / "corpus.duckdb"
    outcome = rapport_in_process(
        "generate", "--db", str(db), "--count", "3", "--turns", "2", "--backend", "simulated"
    )
    assert outcome.returncode == 0, outcome
    return db


# -- numbers past their limits ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("generate", "--count", "2", "--backend", "simulated"),
        ("eval", "--scenarios", "2", "--baseline", "simulated", "--candidate", "simulated"),
    ],
)
def test_a_seed_beyond_64_bits_is_refused_before_anything_is_stored(command, tmp_path):
    db = tmp_path / "fresh.duckdb"
    outcome = rapport_in_process(
        command[0], "--db", str(db), *command[1:], "--seed", BEYOND_64_BITS
    )
    assert_refused_by_usage(outcome, "--seed")
    assert not db.exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--count", constants.MAX_COUNT + 1),
        ("--turns", constants.MAX_TURNS + 1),
        ("--max-active", constants.MAX_ACTIVE + 1),
        ("--seed", -1),
    ],
)
def test_generate_numbers_past_their_limits_are_refused(option, value, tmp_path):
    db = tmp_path / "fresh.duckdb"
    arguments = ["--db", str(db), "--count", "2", "--backend", "simulated", option, str(value)]
    outcome = rapport_in_process("generate", *arguments)
    assert_refused_by_usage(outcome, option)
    assert not db.exists()


def test_the_plan_size_limit_is_stated_in_help():
    outcome = rapport_in_process("generate", "--help")
    assert outcome.returncode == 0
    assert f"{constants.MAX_COUNT:,}" in outcome.stdout


def test_a_run_config_seed_beyond_64_bits_names_the_key(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"seed: {2**64}\n")
    db = tmp_path / "fresh.duckdb"
    outcome = rapport_in_process(
        "generate",
        "--db",
        str(db),
        "--count",
        "1",
        "--config",
        str(config),
        "--backend",
        "simulated",
    )
    assert_one_line_error(outcome, "run.yaml", "seed")
    assert not db.exists()


# -- files that are not UTF-8 -------------------------------------------------------------------


@pytest.fixture
def domain_copy(tmp_path: Path) -> Path:
    target = tmp_path / "domain"
    shutil.copytree(TINY_DOMAIN, target)
    return target


def _spoil(path: Path) -> None:
    """A Latin-1 byte on the second line: what a file saved in the wrong encoding holds."""
    lines = path.read_bytes().split(b"\n")
    lines[1] += b" caf\xe9"
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("file", ["topics.yaml", "prompts/assistant.md", "prompts/judge.md"])
def test_a_non_utf8_byte_in_a_domain_file_stops_generate_with_one_line(domain_copy, file, tmp_path):
    _spoil(domain_copy / file)
    db = tmp_path / "fresh.duckdb"
    outcome = rapport_in_process(
        "generate", "--db", str(db), "--count", "1", "--domain", str(domain_copy),
        "--backend", "simulated",
    )  # fmt: skip
    assert_one_line_error(outcome, file, "line 2", "not UTF-8", "0xe9")
    assert not db.exists()


@pytest.mark.parametrize("file", ["domain.yaml", "prompts/system_prompt.md"])
def test_domain_check_names_a_file_that_is_not_utf8(domain_copy, file):
    _spoil(domain_copy / file)
    outcome = rapport_in_process("domain", "check", str(domain_copy))
    assert_one_line_error(outcome, file, "not UTF-8")


def test_domain_new_from_a_folder_that_is_not_utf8_writes_nothing(domain_copy, tmp_path):
    _spoil(domain_copy / "domain.yaml")
    target = tmp_path / "new-domain"
    outcome = rapport_in_process("domain", "new", str(target), "--from", str(domain_copy))
    assert_one_line_error(outcome, "domain.yaml", "not UTF-8")
    assert not target.exists()


# -- train settings out of range ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("batch_size: 0", "batch_size"),
        ("lora: {rank: -1}", "lora.rank"),
        ("learning_rate: -1", "learning_rate"),
        ("lr_scheduler: sideways", "lr_scheduler"),
        ("warmup_ratio: 2", "warmup_ratio"),
        ("gradient_accumulation: 0", "gradient_accumulation"),
    ],
)
def test_train_settings_out_of_range_are_refused_before_any_model_loads(setting, key, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(setting + "\n")
    adapter = tmp_path / "adapter"
    outcome = rapport_in_process(
        "train", "--config", str(config), "--base", str(tmp_path / "no-model"),
        "--dataset", str(tmp_path / "no-data"), "--output", str(adapter),
    )  # fmt: skip
    # the settings are refused first: the missing base and dataset are never looked at
    assert_one_line_error(outcome, "train.yaml", key)
    assert not adapter.exists()


@pytest.fixture(scope="module")
def tiny_workspace(tmp_path_factory) -> Path:
    """A tiny model and a dataset to train it on, built offline."""
    root = tmp_path_factory.mktemp("tiny-train")
    db = root / "corpus.duckdb"
    generate(GenerateRequest(db=db, count=12, turns=3, backend="simulated", seed=1))
    judge_corpus(JudgeRequest(db=db, judges=("simulated:quality=0.97",)))
    built = rapport_in_process("model", "tiny", "--out", str(root / "tiny"), "--db", str(db))
    assert built.returncode == 0, built
    build_dataset(
        DatasetRequest(db=db, out=root / "data", tokenizer=str(root / "tiny"), max_tokens=768)
    )
    return root


@pytest.mark.slow
def test_lora_target_modules_the_model_lacks_are_one_line_and_leave_no_adapter(
    tiny_workspace, tmp_path
):
    config = tmp_path / "train.yaml"
    config.write_text("lora: {rank: 4, alpha: 8, target_modules: [nope_proj]}\n")
    adapter = tmp_path / "adapter"
    outcome = rapport_in_process(
        "train", "--config", str(config), "--base", str(tiny_workspace / "tiny"),
        "--dataset", str(tiny_workspace / "data"), "--output", str(adapter), "--max-steps", "1",
    )  # fmt: skip
    assert outcome.returncode == 2 and "Traceback" not in outcome.stderr
    last = error_lines(outcome)[-1]  # after transformers' progress bar of loading the model
    assert last.startswith("error:") and "lora.target_modules" in last and "nope_proj" in last
    assert not adapter.exists()


# -- export, serve ------------------------------------------------------------------------------


def test_export_refuses_an_empty_adapter_folder_before_loading_anything(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    out = tmp_path / "model.gguf"
    outcome = rapport_in_process(
        "export", "--base", str(tmp_path / "no-model"), "--adapter", str(adapter), "--out", str(out)
    )
    assert_one_line_error(outcome, "--adapter", "adapter_config.json")
    assert not out.exists()


@pytest.mark.parametrize("model", ["embedded", "gguf:embedded"])
def test_serve_and_chat_take_the_embedded_model_by_name(model):
    from rapport.training.serving import resolve_gguf

    assert resolve_gguf(model) == embedded_model_path()


def test_serve_and_chat_take_a_gguf_prefixed_path(tmp_path):
    from rapport.training.serving import resolve_gguf

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert resolve_gguf(f"gguf:{model}") == model


@pytest.mark.slow
def test_rapport_serve_model_embedded_answers_requests(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rapport",
            "serve",
            "--model",
            "embedded",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    assert "SmolLM2" in r.read().decode()
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- backend specs and prompt templates ---------------------------------------------------------


@pytest.mark.parametrize("url", ["not a url", "ftp://host/v1", "http://", "http://host:port/v1"])
def test_a_base_url_that_is_not_a_url_is_refused_as_invalid(url):
    with pytest.raises(ConfigError, match="invalid URL"):
        parse_backend_spec(f"openai:gpt@{url}", "--assistant-backend")


def test_generate_says_invalid_url_not_cannot_reach(tmp_path):
    db = tmp_path / "fresh.duckdb"
    outcome = rapport_in_process(
        "generate", "--db", str(db), "--count", "1", "--assistant-backend", "openai:gpt@not a url"
    )
    assert_one_line_error(outcome, "--assistant-backend", "invalid URL")
    assert not db.exists()


def test_a_base_url_in_a_run_config_is_checked_too(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "backends:\n  assistant: {provider: openai, model: gpt, base_url: 'localhost:8080'}\n"
    )
    outcome = rapport_in_process(
        "generate", "--db", str(tmp_path / "c.duckdb"), "--count", "1", "--config", str(config)
    )
    assert_one_line_error(outcome, "run.yaml", "backends.assistant", "invalid URL")


def test_a_json_brace_in_a_prompt_names_the_escape(domain_copy):
    prompt = domain_copy / "prompts" / "user_simulator.md"
    prompt.write_text(prompt.read_text() + '\nAnswer as {"mood": "calm"}\n')
    outcome = rapport_in_process("domain", "check", str(domain_copy))
    assert_one_line_error(outcome, "user_simulator.md", "unknown placeholder", "{{ and }}")


def test_doubled_braces_in_a_prompt_reach_the_model_as_literal_braces(domain_copy):
    prompt = domain_copy / "prompts" / "user_simulator.md"
    prompt.write_text(prompt.read_text() + '\nAnswer as {{"mood": "calm"}}\n')
    domain = load_domain(domain_copy)
    rendered = user_simulator_prompt(domain, sample_scenario(domain, "plan", 0, 0))
    assert 'Answer as {"mood": "calm"}' in rendered


def test_a_single_brace_in_a_prompt_names_the_escape(domain_copy):
    prompt = domain_copy / "prompts" / "assistant.md"
    prompt.write_text(prompt.read_text() + "\nA lone } here\n")
    outcome = rapport_in_process("domain", "check", str(domain_copy))
    assert_one_line_error(outcome, "assistant.md", "invalid template", "{{ and }}")


def test_json_in_the_system_prompt_is_kept_as_written(domain_copy):
    prompt = domain_copy / "prompts" / "system_prompt.md"
    prompt.write_text(prompt.read_text() + '\nReply as {"reply": "..."}\n')
    assert '{"reply": "..."}' in load_domain(domain_copy).prompts.system_prompt


def test_a_placeholder_in_the_system_prompt_is_refused(domain_copy):
    prompt = domain_copy / "prompts" / "system_prompt.md"
    prompt.write_text(prompt.read_text() + "\nYou help with {domain}.\n")
    outcome = rapport_in_process("domain", "check", str(domain_copy))
    assert_one_line_error(outcome, "system_prompt.md", "{domain}", "used as written")


# -- a full disk --------------------------------------------------------------------------------

FILE_SIZE_LIMIT = 600_000  # bytes: room for the schema and the plan, not for every conversation


def _with_file_size_limit() -> None:
    """In the child: writes past the limit fail with EFBIG instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path):
    db = tmp_path / "corpus.duckdb"
    command = [
        sys.executable, "-m", "rapport", "generate", "--db", str(db), "--count", "200",
        "--turns", "3", "--backend", "simulated", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "300"}
    limited = subprocess.run(
        command, capture_output=True, text=True, env=env, preexec_fn=_with_file_size_limit
    )
    assert limited.returncode != 0
    assert "Traceback" not in limited.stderr
    lines = [line for line in limited.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, limited.stderr
    assert str(db) in lines[0] and os.strerror(27) in lines[0]  # EFBIG: "File too large"
    resumed = subprocess.run(command, capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "200/200 complete" in resumed.stdout


# -- every command, a few bad arguments each ----------------------------------------------------

BAD_ARGUMENTS: dict[tuple[str, ...], list[list[str]]] = {
    ("generate",): [
        [],
        ["--db", "{corpus}", "--count", "many"],
        ["--db", "{fresh}", "--count", "1", "--seed", BEYOND_64_BITS],
        ["--db", "{missing}/c.duckdb", "--count", "1", "--backend", "simulated"],
        ["--db", "{text}", "--count", "1", "--backend", "simulated"],
        ["--db", "{fresh}", "--count", "1", "--domain", "{missing}"],
        ["--db", "{fresh}", "--count", "1", "--config", "{missing}/run.yaml"],
        ["--db", "{fresh}", "--count", "1", "--backend", "simulated", "--ray", "--workers", "0"],
    ],
    ("judge",): [
        ["--db", "{missing}/c.duckdb"],
        ["--db", "{corpus}", "--max-active", "0"],
        ["--db", "{corpus}", "--judge", "nonsense"],
        ["--db", "{text}"],
    ],
    ("sql",): [
        ["--db", "{missing}/c.duckdb", "SELECT 1"],
        ["--db", "{corpus}", "--format", "xml", "SELECT 1"],
        ["--db", "{corpus}", "--file", "{missing}/q.sql"],
        ["--db", "{corpus}", "--limit", "-1", "SELECT 1"],
        ["--db", "{corpus}", "SELECT * FROM nowhere"],
        ["--db", "{corpus}"],
        ["--db", "{text}", "SELECT 1"],
    ],
    ("stats",): [
        ["--db", "{missing}/c.duckdb"],
        ["--db", "{text}"],
        ["--db", "{empty}"],
        [],
        ["--db", "{corpus}", "--duplicates", "--threshold", "0"],
        ["--db", "{corpus}", "--duplicates", "--threshold", "1.5"],
        ["--db", "{corpus}", "--duplicates", "--threshold", "most"],
        ["--db", "{text}", "--duplicates"],
    ],
    ("report",): [["--db", "{missing}/c.duckdb", "--out", "{fresh_dir}"], ["--db", "{corpus}"]],
    ("dataset", "build"): [
        ["--db", "{missing}/c.duckdb", "--out", "{fresh_dir}"],
        ["--db", "{corpus}", "--out", "{fresh_dir}", "--format", "xml"],
        ["--db", "{corpus}", "--out", "{fresh_dir}", "--validation", "2"],
        ["--db", "{corpus}", "--out", "{fresh_dir}", "--max-tokens", "lots"],
        ["--db", "{corpus}", "--out", "{fresh_dir}", "--dedup", "-0.2"],
        ["--db", "{corpus}", "--out", "{fresh_dir}", "--dedup", "some"],
    ],
    ("eval",): [
        [
            "--db",
            "{missing}/c.duckdb",
            "--scenarios",
            "1",
            "--baseline",
            "simulated",
            "--candidate",
            "simulated",
        ],
        [
            "--db",
            "{corpus}",
            "--scenarios",
            "some",
            "--baseline",
            "simulated",
            "--candidate",
            "simulated",
        ],
        [
            "--db",
            "{corpus}",
            "--scenarios",
            "1",
            "--baseline",
            "nonsense",
            "--candidate",
            "simulated",
        ],
        [
            "--db",
            "{corpus}",
            "--scenarios",
            "1",
            "--baseline",
            "simulated",
            "--candidate",
            "simulated",
            "--seed",
            BEYOND_64_BITS,
        ],
    ],
    ("iterate",): [
        ["--domain", "{missing}"],
        ["--domain", "{tiny}", "--count", "0"],
        ["--domain", "{tiny}", "--seed", BEYOND_64_BITS],
        [],
    ],
    ("merge",): [
        [],
        ["--out", "{fresh}"],
        ["--out", "{fresh}", "{missing}/shard.duckdb"],
        ["--out", "{fresh}", "{missing}/*.duckdb"],
        ["--out", "{fresh}", "{text}"],
        ["--out", "{corpus}", "{corpus}"],
        ["--out", "{corpus}", "{text}"],
    ],
    ("view",): [
        ["--db", "{missing}/c.duckdb"],
        ["--db", "{text}"],
        ["--db", "{empty}"],
        ["--db", "{corpus}", "--port", "70000"],
        ["--db", "{corpus}", "--port", "http"],
        ["--db", "{corpus}", "--host", "no-such-host.invalid"],
        [],
    ],
    ("review", "sample"): [
        ["--db", "{missing}/c.duckdb", "--n", "5"],
        ["--db", "{text}", "--n", "5"],
        ["--db", "{corpus}", "--n", "0"],
        ["--db", "{corpus}", "--n", "some"],
        ["--db", "{corpus}", "--n", "5", "--stratify", "colour"],
        ["--db", "{corpus}", "--n", "5", "--seed", "-1"],
        ["--db", "{corpus}", "--n", "5", "--strategy", "loudest"],
        ["--db", "{corpus}", "--n", "5", "--queue", "a/b"],
        ["--db", "{corpus}"],
    ],
    ("domain", "new"): [["{full}"], ["{fresh_dir}", "--from", "{missing}"], []],
    ("domain", "check"): [["{missing}"], ["{text}"], ["{tiny}", "--samples", "few"]],
    ("domain", "draft"): [
        ["{full}", "--describe", "bikes", "--backend", "simulated"],
        ["{fresh_dir}", "--describe", "bikes", "--backend", "nonsense"],
        ["{fresh_dir}", "--backend", "simulated"],
    ],
    ("model", "tiny"): [["--out", "{fresh_dir}", "--db", "{missing}/c.duckdb"], []],
    ("train",): [
        ["--config", "{missing}/train.yaml"],
        ["--base", "{missing}", "--dataset", "{missing}"],
        ["--max-steps", "0"],
        ["--config", "{text}"],
    ],
    ("export",): [
        ["--base", "{missing}", "--out", "{fresh_dir}/m.gguf"],
        ["--base", "gguf:embedded", "--out", "{fresh_dir}/m.gguf", "--adapter", "{empty}"],
        ["--base", "gguf:embedded", "--out", "{fresh_dir}/m.gguf", "--quant", "q3"],
        ["--base", "gguf:embedded", "--out", "{fresh_dir}/m.gguf", "--adapter", "{missing}"],
    ],
    ("serve",): [
        ["--model", "{missing}/m.gguf"],
        ["--model", "embedded", "--port", "http"],
        ["--model", "embedded", "--port", "70000"],
        ["--model", "embedded", "--n-ctx", "1"],
    ],
    ("chat",): [
        ["--model", "{missing}/m.gguf"],
        ["--model", "embedded", "--domain", "{missing}"],
        ["--model", "embedded", "--n-ctx", "lots"],
    ],
    ("bench", "provider"): [
        ["--port", "http"],
        ["--port", "70000"],
        ["--fault-429", "2"],
        ["--rpm", "0"],
    ],
    ("bench", "throughput"): [["--duration-s", "1"], ["--rpm", "fast"], ["--tpm", "-5"]],
    ("bench", "cost"): [
        ["--out", "{fresh_dir}", "--conversations", "0"],
        ["--out", "{fresh_dir}", "--exchanges", "many"],
        ["--out", "{fresh_dir}", "--api", "gemini"],
    ],
    ("bench", "scale"): [["--duration-s", "1"], ["--rpm", "fast"], ["--workers", "1"]],
    ("bench", "dedup"): [
        ["--out", "{fresh_dir}", "--conversations", "5"],
        ["--out", "{fresh_dir}", "--threshold", "0"],
        ["--out", "{fresh_dir}", "--exchanges", "many"],
    ],
    ("bench", "slots"): [
        ["--out", "{fresh_dir}", "--slots", "0"],
        ["--out", "{fresh_dir}", "--service-ms", "fast"],
        ["--out", "{fresh_dir}", "--duration-s", "1"],
    ],
}


def _commands(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    children = getattr(command, "commands", None)
    if children is None:
        return [prefix]
    return [path for name, sub in children.items() for path in _commands(sub, (*prefix, name))]


def test_the_walk_covers_every_command_of_the_app():
    assert sorted(_commands(typer.main.get_command(app))) == sorted(BAD_ARGUMENTS)


@pytest.fixture(scope="module")
def places(corpus, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("places")
    text = root / "notes.txt"
    text.write_text("not a database, not YAML: [")
    (root / "empty").mkdir()
    (root / "full").mkdir()
    (root / "full" / "README.md").write_text("someone's work\n")
    return {
        "corpus": str(corpus),
        "missing": str(root / "nonexistent"),
        "text": str(text),
        "empty": str(root / "empty"),
        "full": str(root / "full"),
        "tiny": str(TINY_DOMAIN),
    }


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        pytest.param(command, arguments, id=" ".join((*command, *arguments)))
        for command, cases in BAD_ARGUMENTS.items()
        for arguments in cases
    ],
)
def test_bad_arguments_to_any_command_exit_non_zero_without_a_traceback(
    command, arguments, places, tmp_path
):
    paths = {**places, "fresh": str(tmp_path / "fresh.duckdb"), "fresh_dir": str(tmp_path / "out")}
    corpus = Path(places["corpus"])
    stored_before = _stored(corpus)
    outcome = rapport_in_process(*command, *(argument.format(**paths) for argument in arguments))
    assert outcome.returncode != 0, outcome
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert error_lines(outcome), "no word on stderr"
    assert _stored(corpus) == stored_before, "the corpus was changed"
    assert not Path(paths["fresh"]).exists()


def _stored(db: Path) -> dict[str, list[str]]:
    """Every row of every table, as text: what a command must leave as it found it."""
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = [name for (name,) in conn.execute("SHOW TABLES").fetchall()]
        return {
            table: sorted(str(row) for row in conn.execute(f'SELECT * FROM "{table}"').fetchall())
            for table in tables
        }
