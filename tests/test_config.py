"""Domain and run config: the shipped domains load; every kind of mistake is one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from rapport.config.errors import ConfigError
from rapport.config.loader import load_domain, shipped_domain_dir
from rapport.config.run import load_run_config
from tests.conftest import TINY_DOMAIN


def test_therapy_domain_has_the_seed_rubric(therapy):
    rubric = therapy.rubric
    enabled = [c for c in rubric.criteria if c.enabled]
    assert len(enabled) == 17
    assert sorted(c.id for c in enabled if c.gate) == ["CQ8", "CQ9"]
    assert rubric.pass_threshold == pytest.approx(0.80)
    assert rubric.categories == pytest.approx(
        {
            "comprehension": 0.15,
            "connection": 0.20,
            "naturalness": 0.15,
            "multi_topic": 0.30,
            "context_use": 0.20,
        }
    )
    optional = [c for c in rubric.criteria if not c.enabled]
    assert [c.id for c in optional] == ["CP7"]
    never_na = {c.id for c in enabled if not c.na_valid}
    assert {"CQ1", "CP2", "MT1", "MT6", "CQ8"} <= never_na


def test_therapy_domain_has_the_seed_flaws(therapy):
    names = {name for category in therapy.flaws.categories.values() for name in category}
    assert len(names) == 19
    assert {"burying_the_lede", "yes_but", "rewriting_history", "catastrophizing"} <= names
    for category in therapy.flaws.categories.values():
        for flaw in category.values():
            assert flaw.description


def test_tiny_domain_is_not_therapy(tiny):
    assert tiny.name == "bike_repair"
    assert [c.id for c in tiny.rubric.criteria] == ["A1", "C1", "S1"]


@pytest.fixture
def domain_copy(tmp_path: Path) -> Path:
    target = tmp_path / "domain"
    shutil.copytree(TINY_DOMAIN, target)
    return target


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def _error(directory: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_domain(directory)
    message = str(caught.value)
    assert "\n" not in message
    return caught.value


def test_unknown_key_names_file_and_key(domain_copy):
    _edit(domain_copy / "topics.yaml", lambda d: d["categories"]["brakes"].update(colour="red"))
    error = _error(domain_copy)
    assert error.file.endswith("topics.yaml")
    assert error.key == "categories.brakes"
    assert "unknown field colour" in error.problem


def test_wrong_type_names_the_dict_key(domain_copy):
    _edit(
        domain_copy / "flaws.yaml",
        lambda d: d["categories"]["vague"]["no_model_name"].update(weight="high"),
    )
    error = _error(domain_copy)
    assert error.file.endswith("flaws.yaml")
    assert error.key == "categories.vague.no_model_name.weight"
    assert "expected float, got str" in error.problem


def test_weights_that_do_not_sum_to_one(domain_copy):
    _edit(domain_copy / "rubric.yaml", lambda d: d["categories"].update(accuracy=0.7))
    error = _error(domain_copy)
    assert error.file.endswith("rubric.yaml")
    assert error.key == "categories"
    assert "sum to 1.1" in error.problem


def test_missing_file(domain_copy):
    (domain_copy / "personas.yaml").unlink()
    error = _error(domain_copy)
    assert error.file.endswith("personas.yaml")
    assert error.problem == "missing file"


def test_missing_prompt(domain_copy):
    (domain_copy / "prompts" / "judge.md").unlink()
    error = _error(domain_copy)
    assert error.file.endswith("judge.md")


def test_unknown_placeholder_in_prompt(domain_copy):
    prompt = domain_copy / "prompts" / "assistant.md"
    prompt.write_text(prompt.read_text() + "\n{favourite_colour}\n")
    error = _error(domain_copy)
    assert error.key == "{favourite_colour}"
    assert "unknown placeholder" in error.problem


def test_invalid_yaml_names_the_line(domain_copy):
    (domain_copy / "domain.yaml").write_text("name: x\ndescription: [unclosed\n")
    error = _error(domain_copy)
    assert error.key is not None and error.key.startswith("line ")


def test_list_index_is_named(domain_copy):
    _edit(domain_copy / "rubric.yaml", lambda d: d["criteria"][1].update(min_turns=0))
    error = _error(domain_copy)
    assert error.key == "criteria[1].min_turns"


def test_unknown_reference_is_caught(domain_copy):
    _edit(domain_copy / "flaws.yaml", lambda d: d["policy"].update(primary_from=["nope"]))
    error = _error(domain_copy)
    assert error.key == "policy.primary_from"
    assert "nope" in error.problem


def test_missing_domain_folder(tmp_path):
    error = _error(tmp_path / "nowhere")
    assert error.problem == "domain folder not found"


def test_shipped_domain_dir_exists():
    assert (shipped_domain_dir() / "rubric.yaml").is_file()


def test_run_config_refuses_inline_api_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("backends:\n  assistant:\n    provider: openai\n    api_key: sk-secret\n")
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert caught.value.key == "backends.assistant.api_key"
    assert "sk-secret" not in str(caught.value)


def test_run_config_unknown_provider(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("backends:\n  user_sim:\n    provider: carrier-pigeon\n")
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    assert caught.value.key == "backends.user_sim.provider"


def test_run_config_relative_domain_is_resolved_from_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("domain: my_domain\nmax_active: 7\n")
    config = load_run_config(path)
    assert config.domain == str(tmp_path / "my_domain")
    assert config.max_active == 7
