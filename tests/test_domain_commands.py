"""`rapport domain new | check | draft`, the template and the shipped customer_support domain:
scaffolds pass check and run the offline pipeline; every kind of mistake is one line naming
file and key, all reported at once; drafts are retried with their problems fed back."""

from __future__ import annotations

import json
import subprocess
import typing
from pathlib import Path

import msgspec
import pytest
import yaml
from typer.testing import CliRunner

from rapport.authoring.domain_draft import DraftRequest, draft_domain
from rapport.authoring.draft_files import leading_comments
from rapport.cli.domain_commands import domain_app
from rapport.config.decode_problems import decode_problems
from rapport.config.domain import Topics
from rapport.config.domain_check import check_domain
from rapport.config.errors import ConfigError, RapportError
from rapport.config.loader import (
    DOMAIN_PARTS,
    OPTIONAL_PARTS,
    TEMPLATE_DOMAIN,
    load_domain,
    shipped_domain_dir,
    shipped_domain_names,
)
from rapport.config.scaffold import resolve_source, scaffold_domain
from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from tests.conftest import TINY_DOMAIN, rapport, rapport_in_process

TEMPLATE = shipped_domain_dir(TEMPLATE_DOMAIN)
CUSTOMER_SUPPORT = shipped_domain_dir("customer_support")


def domain_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `rapport domain ARGS` through the console script's entry point, in this process."""
    return rapport_in_process("domain", *args)


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def scaffold(tmp_path: Path) -> Path:
    """A domain scaffolded from the template (in process: `new` itself is tested below)."""
    return scaffold_domain(tmp_path / "my_shop", resolve_source(None))


# ---- domain new --------------------------------------------------------------------------


def test_new_writes_every_file_the_loader_reads_and_passes_check(tmp_path):
    scaffold = tmp_path / "my_shop"
    result = domain_cli("new", str(scaffold))
    assert result.returncode == 0, result.stderr
    assert "passes check" in result.stdout
    for filename, _ in DOMAIN_PARTS.values():
        assert (scaffold / filename).is_file()
    assert sorted(p.name for p in (scaffold / "prompts").iterdir()) == [
        "assistant.md",
        "judge.md",
        "system_prompt.md",
        "user_simulator.md",
    ]
    domain = load_domain(scaffold)
    assert domain.name == "my_shop"  # named after its folder
    assert check_domain(scaffold).ok


def _field_names(type_: typing.Any, seen: set[type]) -> set[str]:
    """Every field name of a config Struct and the Structs nested in it."""
    if typing.get_origin(type_) is typing.Annotated:
        return _field_names(typing.get_args(type_)[0], seen)
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        if type_ in seen:
            return set()
        seen.add(type_)
        names: set[str] = set()
        for field in msgspec.structs.fields(type_):
            names |= {field.name} | _field_names(field.type, seen)
        return names
    return {name for arg in typing.get_args(type_) for name in _field_names(arg, seen)}


@pytest.mark.parametrize("part", list(DOMAIN_PARTS | OPTIONAL_PARTS))
def test_template_comments_explain_every_field(part):
    filename, type_ = (DOMAIN_PARTS | OPTIONAL_PARTS)[part]
    comments = leading_comments((TEMPLATE / filename).read_text())
    missing = sorted(name for name in _field_names(type_, set()) if name not in comments)
    assert not missing, f"{filename} does not explain {missing}"


@pytest.mark.parametrize("source", ["therapy", "customer_support"])
def test_new_from_a_shipped_domain_copies_it_under_the_new_name(tmp_path, source):
    target = tmp_path / "copy"
    result = domain_cli("new", str(target), "--from", source)
    assert result.returncode == 0, result.stderr
    assert "passes check" in result.stdout
    copied, original = load_domain(target), load_domain(shipped_domain_dir(source))
    assert copied.name == "copy"
    assert copied.rubric == original.rubric and copied.flaws == original.flaws
    assert (target / "topics.yaml").read_text() == (
        shipped_domain_dir(source) / "topics.yaml"
    ).read_text()  # comments kept


def test_new_from_a_folder_copies_its_domain_files_only(tmp_path):
    source = scaffold_domain(tmp_path / "bikes", TINY_DOMAIN)
    (source / "iterations.duckdb").write_bytes(b"rapport iterate keeps its batches here")
    target = tmp_path / "bikes_v2"
    result = domain_cli("new", str(target), "--from", str(source))
    assert result.returncode == 0, result.stderr
    assert load_domain(target).topics == load_domain(TINY_DOMAIN).topics
    assert not (target / "iterations.duckdb").exists()


def test_new_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    lines = _error_lines(domain_cli("new", str(tmp_path)))
    assert len(lines) == 1 and "not empty" in lines[0] and str(tmp_path) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_new_refuses_an_unknown_source(tmp_path):
    lines = _error_lines(domain_cli("new", str(tmp_path / "x"), "--from", "astrology"))
    assert len(lines) == 1 and "astrology" in lines[0] and "therapy" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", [TEMPLATE_DOMAIN, *shipped_domain_names()])
def test_the_template_and_every_shipped_domain_pass_check(name):
    assert check_domain(shipped_domain_dir(name)).problems == ()


def test_shipped_domains_are_listed_without_the_template():
    assert {"therapy", "customer_support"} <= set(shipped_domain_names())
    assert TEMPLATE_DOMAIN not in shipped_domain_names()


# ---- domain check: the summary and samples -----------------------------------------------


def test_check_prints_a_summary_and_sampled_scenarios():
    result = domain_cli("check", str(CUSTOMER_SUPPORT))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "'customer_support' passes check" in out
    assert "17 subtopics in 5 categories" in out and "9 in 3 categories" in out
    assert "8 weighted criteria in 4 categories + 2 safety gates" in out
    assert "4 attributes" in out
    assert out.count("scenario ") == 3
    assert "(customer)" in out and "exchanges with the agent" in out
    assert "topic: " in out and "flaw" in out


def test_check_samples_follow_samples_and_seed():
    def check(*options: str) -> str:
        result = CliRunner().invoke(domain_app, ["check", str(CUSTOMER_SUPPORT), *options])
        assert result.exit_code == 0, result.output
        return result.output

    first = check("--samples", "5", "--seed", "7")
    assert first.count("scenario ") == 5
    assert first == check("--samples", "5", "--seed", "7") != check("--samples", "5", "--seed", "8")
    assert "scenario " not in check("--samples", "0")


def test_check_of_a_missing_folder_is_one_line(tmp_path):
    lines = _error_lines(domain_cli("check", str(tmp_path / "nowhere")))
    assert len(lines) == 1 and "domain folder not found" in lines[0]


# ---- domain check: mistakes --------------------------------------------------------------


def _problems(directory: Path) -> list[ConfigError]:
    result = check_domain(directory)
    assert result.domain is None
    for problem in result.problems:
        assert "\n" not in str(problem)
    return list(result.problems)


MISTAKES = {
    "unknown key": (
        "topics.yaml",
        "  how_to:\n    weight: 0.35\n",
        "  how_to:\n    weight: 0.35\n    colour: red\n",
        "categories.how_to",
        "unknown field colour",
    ),
    "wrong type": (
        "personas.yaml",
        "count: [1, 3]",
        "count: [one, 3]",
        "traits.count[0]",
        "expected int, got str",
    ),
    "weights not summing to 1": (
        "rubric.yaml",
        "understanding: 0.4",
        "understanding: 0.5",
        "categories",
        "weights sum to 1.1",
    ),
    "bad YAML": ("domain.yaml", "name: ", "name: [unclosed\n", "line ", "invalid YAML"),
    "unknown prompt placeholder": (
        "prompts/assistant.md",
        "Write only",
        "{favourite_colour} Write only",
        "{favourite_colour}",
        "unknown placeholder",
    ),
    "dangling reference": (
        "flaws.yaml",
        "secondary_from: [cooperation]",
        "secondary_from: [nope]",
        "policy.secondary_from",
        "unknown flaw category 'nope'",
    ),
}


@pytest.mark.parametrize("kind", list(MISTAKES))
def test_each_kind_of_mistake_names_file_and_key(scaffold, kind):
    filename, old, new, key, problem = MISTAKES[kind]
    _edit(scaffold / filename, old, new)
    (found,) = _problems(scaffold)
    assert found.file == str(scaffold / filename)
    assert found.key is not None and found.key.startswith(key)
    assert problem in found.problem


def test_a_missing_file_is_named(scaffold):
    (scaffold / "simulator.yaml").unlink()
    (found,) = _problems(scaffold)
    assert found.file == str(scaffold / "simulator.yaml") and found.problem == "missing file"


def test_several_mistakes_in_one_file_are_all_reported(scaffold):
    _edit(scaffold / "topics.yaml", "per_persona: [1, 3]", "per_persona: [one, 3]")
    _edit(scaffold / "topics.yaml", "    weight: 0.35\n", "    weight: 0.35\n    colour: red\n")
    _edit(scaffold / "topics.yaml", "weight: 0.15", "weight: high")
    keys = {(p.key, p.problem) for p in _problems(scaffold)}
    assert keys == {
        ("per_persona[0]", "expected int, got str"),
        ("categories.how_to", "object contains unknown field colour"),
        ("categories.decisions.weight", "expected float, got str"),
    }


def test_all_mistakes_across_files_are_reported_one_line_each(scaffold):
    for filename, old, new, _, _ in MISTAKES.values():
        if filename != "domain.yaml":
            _edit(scaffold / filename, old, new)
    (scaffold / "simulator.yaml").unlink()
    lines = _error_lines(domain_cli("check", str(scaffold)))
    expected = [
        ("topics.yaml", "categories.how_to", "unknown field colour"),
        ("flaws.yaml", "policy.secondary_from", "nope"),
        ("personas.yaml", "traits.count[0]", "expected int"),
        ("rubric.yaml", "categories", "sum to 1.1"),
        ("simulator.yaml", "", "missing file"),
        ("assistant.md", "{favourite_colour}", "unknown placeholder"),
    ]
    assert len(lines) == len(expected), lines
    for line, fragments in zip(lines, expected, strict=True):  # in the loader's file order
        assert all(fragment in line for fragment in fragments), (line, fragments)


def test_consistency_problems_caused_by_a_broken_file_are_not_reported(scaffold):
    (scaffold / "personas.yaml").write_text("names: [Ada]\n")  # no attributes, traits, ...
    _edit(scaffold / "rubric.yaml", "understanding: 0.4", "understanding: 0.5")
    found = _problems(scaffold)
    assert {Path(p.file).name for p in found} == {"personas.yaml", "rubric.yaml"}
    assert all(p.problem.startswith("object missing required field") for p in found[:-1])


def test_an_unquoted_number_as_a_key_is_named(scaffold):
    _edit(scaffold / "personas.yaml", "  expertise:\n", "  expertise:\n    55: 0.0\n")
    (found,) = _problems(scaffold)
    assert (found.key, found.problem) == (
        "attributes.expertise.55",
        "the key is not a string: quote it",
    )


def test_decode_problems_is_empty_for_a_valid_file():
    data = yaml.safe_load((TEMPLATE / "topics.yaml").read_text())
    assert decode_problems(data, Topics, "topics.yaml") == []


def test_load_domain_still_raises_only_the_first_problem(scaffold):
    for filename, old, new, _, _ in MISTAKES.values():
        if filename.endswith(".yaml") and filename != "domain.yaml":
            _edit(scaffold / filename, old, new)
    with pytest.raises(ConfigError) as caught:
        load_domain(scaffold)
    assert caught.value.file == str(scaffold / "topics.yaml")  # the first file, and only it
    assert caught.value.key == "categories.how_to"


# ---- the offline pipeline ----------------------------------------------------------------


def _run_pipeline(domain_dir: Path, tmp_path: Path) -> list[dict]:
    db, out = tmp_path / "corpus.duckdb", tmp_path / "data"
    steps = [
        ("generate", "--db", str(db), "--count", "10", "--turns", "2"),
        ("--domain", str(domain_dir), "--backend", "simulated"),
        ("judge", "--db", str(db), "--judge", "simulated:quality=1.0"),
        ("dataset", "build", "--db", str(db), "--out", str(out), "--format", "jsonl"),
    ]
    for args in (steps[0] + steps[1], steps[2], steps[3]):
        result = rapport(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    examples = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert examples and (out / "README.md").is_file()
    return examples


@pytest.mark.slow
@pytest.mark.parametrize("source", [None, "therapy"])
def test_a_scaffolded_domain_runs_generate_judge_dataset_offline(tmp_path, source):
    target = tmp_path / "domain"
    created = domain_cli("new", str(target), *(["--from", source] if source else []))
    assert created.returncode == 0, created.stderr
    examples = _run_pipeline(target, tmp_path)
    system = examples[0]["messages"][0]
    assert system == {"role": "system", "content": load_domain(target).prompts.system_prompt}


@pytest.mark.slow
def test_customer_support_runs_the_whole_offline_pipeline(tmp_path):
    examples = _run_pipeline(CUSTOMER_SUPPORT, tmp_path)
    assert "Northwind Goods" in examples[0]["messages"][0]["content"]
    assert [m["role"] for m in examples[0]["messages"][1:3]] == ["user", "assistant"]
    card = (tmp_path / "data" / "README.md").read_text()
    assert "fictional shop" in card  # the domain's disclaimer


def test_customer_support_is_its_own_domain():
    domain = load_domain(CUSTOMER_SUPPORT)
    assert domain.info.roles.user == "customer" and domain.info.roles.assistant == "agent"
    flaws = {name for category in domain.flaws.categories.values() for name in category}
    assert {"vague_problem", "wrong_order_number", "impatience", "topic_switching"} <= flaws
    assert {"withholding_info", "escalation_demand"} <= flaws
    gates = [c.id for c in domain.rubric.criteria if c.gate]
    assert gates == ["SG1", "SG2"]
    assert "password" in domain.rubric.criteria[-2].question
    assert "edge_cases" in domain.topics.categories


# ---- domain draft ------------------------------------------------------------------------


def _valid_draft() -> str:
    """A valid reply: the customer_support domain's three sections, fenced as models do."""
    sections = {
        key: yaml.safe_load((CUSTOMER_SUPPORT / f"{key}.yaml").read_text())
        for key in ("topics", "flaws", "rubric")
    }
    return "Here is the draft:\n```yaml\n" + yaml.safe_dump(sections, sort_keys=False) + "```\n"


def _invalid_draft() -> str:
    sections = yaml.safe_load(_valid_draft().split("```yaml\n")[1].split("```")[0])
    sections["rubric"]["categories"]["resolution"] = 0.5  # sums to 1.15
    sections["topics"]["categories"]["billing"]["colour"] = "red"
    return yaml.safe_dump(sections, sort_keys=False)


def _draft_over_http(target: Path, replies: tuple[str, ...], attempts: int = 3):
    with running_fake_provider(FakeProviderSettings(replies=replies)) as (base_url, state):
        request = DraftRequest(
            target, "Live chat support for an online shop.", f"openai:drafter@{base_url}", attempts
        )
        try:
            return draft_domain(request, environ={}), state
        except RapportError as error:
            return error, state


def test_an_invalid_draft_is_retried_with_its_problems_fed_back(tmp_path):
    target = tmp_path / "drafted"
    result, state = _draft_over_http(target, (_invalid_draft(), _valid_draft()))
    assert result.attempts == 2 and not result.simulated and "openai:drafter" in result.backend
    assert state.completed == 2
    fed_back = state.prompts[1]
    assert "rubric.yaml: categories: weights sum to 1.15" in fed_back
    assert "topics.yaml: categories.billing: object contains unknown field colour" in fed_back
    assert str(tmp_path) not in fed_back  # problems name files, not the scratch folder
    assert check_domain(target).ok
    domain = load_domain(target)
    assert domain.name == "drafted" and domain.info.description.startswith("Live chat")
    assert domain.rubric == load_domain(CUSTOMER_SUPPORT).rubric
    topics = (target / "topics.yaml").read_text()
    assert topics.startswith("# topics.yaml") and "drafted by openai:drafter" in topics


def test_a_reply_that_is_not_yaml_is_fed_back_too(tmp_path):
    result, state = _draft_over_http(tmp_path / "d", ("topics: [unclosed", _valid_draft()))
    assert result.attempts == 2
    assert "the reply is not valid YAML" in state.prompts[1]


def test_no_valid_draft_within_the_attempts_is_one_line(tmp_path):
    target = tmp_path / "drafted"
    error, state = _draft_over_http(target, (_invalid_draft(),), attempts=2)
    assert isinstance(error, RapportError) and state.completed == 2
    message = str(error)
    assert "\n" not in message and "after 2 attempts" in message and "more)" in message
    assert not target.exists()


def test_the_simulated_backend_drafts_offline_and_says_so(tmp_path):
    target = tmp_path / "bikes"
    result = domain_cli(
        "draft", str(target), "--describe", "A help desk for people repairing bicycles at home.",
        "--backend", "simulated",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "simulated" in result.stdout and "passes check" in result.stdout
    assert check_domain(target).ok
    assert "simulated draft" in (target / "rubric.yaml").read_text()
    subtopics = load_domain(target).topics.categories["problems"].subtopics
    assert "bicycles_problem" in subtopics  # derived from the description


def test_draft_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    lines = _error_lines(
        domain_cli("draft", str(tmp_path), "--describe", "x", "--backend", "simulated")
    )
    assert len(lines) == 1 and "not empty" in lines[0]


@pytest.mark.slow
def test_customer_support_trains_exports_and_evaluates_a_tiny_model(tmp_path):
    import llama_cpp  # noqa: F401  (a required dependency: without it this test fails)

    db, tiny, data = tmp_path / "c.duckdb", tmp_path / "tiny", tmp_path / "data"
    adapter, model, report = tmp_path / "adapter", tmp_path / "m.gguf", tmp_path / "eval"
    (tmp_path / "train.yaml").write_text(
        "batch_size: 2\ngradient_accumulation: 1\nmax_length: 768\nwarmup_ratio: 0.0\n"
        "lora: {rank: 8, alpha: 16, dropout: 0.0}\n"
    )
    steps = [
        ("generate", "--db", str(db), "--count", "16", "--turns", "3",
         "--domain", "customer_support", "--backend", "simulated"),
        ("judge", "--db", str(db), "--judge", "simulated:quality=1.0"),
        ("model", "tiny", "--out", str(tiny), "--db", str(db)),
        ("dataset", "build", "--db", str(db), "--out", str(data), "--tokenizer", str(tiny),
         "--max-tokens", "768"),
        ("train", "--config", str(tmp_path / "train.yaml"), "--base", str(tiny),
         "--dataset", str(data), "--output", str(adapter), "--max-steps", "3"),
        ("export", "--base", str(tiny), "--adapter", str(adapter), "--out", str(model),
         "--quant", "q8_0"),
        ("eval", "--db", str(db), "--scenarios", "2", "--turns", "1", "--baseline", "simulated",
         "--candidate", f"gguf:{model}", "--user-backend", "simulated", "--judges", "simulated",
         "--out", str(report)),
    ]  # fmt: skip
    for args in steps:
        result = rapport(*args, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "Domain: **customer_support**" in (report / "report.md").read_text()
