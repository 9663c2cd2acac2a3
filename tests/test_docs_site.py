"""The documentation a user navigates: the README stays one screen or three and links into
docs/, every page the site lists exists, the CLI reference is generated from the typer app
(so every command and option is in it) and the API reference can find every subpackage.
`mkdocs build --strict` itself runs in scripts/test (the full CI path)."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import typer
import yaml

from rapport.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GENERATED = {"reference/cli.md"}  # written by the hook at build time, never on disk
TWO_COMMANDS = """\
```bash
scripts/install && .venv/bin/rapport generate --db rapport.duckdb --count 3 --turns 2 && .venv/bin/rapport stats --db rapport.duckdb
scripts/test
```"""


def _script(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _commands(command: object, path: list[str]) -> list[tuple[list[str], object]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            found += _commands(sub, [*path, name])
    return found


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert readme.startswith("# Rapport\n\n" + TWO_COMMANDS)


def test_readme_shows_the_python_api() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("rapport.open(", "corpus.generate(", "corpus.judge(", ".df()", "corpus.dataset("):
        assert name in readme


def test_readme_links_point_at_pages_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text())
    assert len(links) >= 20
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []


def test_every_page_in_the_nav_exists_and_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = _nav_pages(config["nav"])
    on_disk = {
        str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md") if "notebooks" not in path.parts
    }
    assert [page for page in listed if page not in on_disk | GENERATED] == []
    assert on_disk - set(listed) == set()


def test_the_cli_reference_has_every_command_and_option() -> None:
    page = _script("cli_reference").render()
    root = typer.main.get_command(app)
    commands = _commands(root, ["rapport"])
    assert len(commands) > 25
    for path, command in commands:
        assert f"`{' '.join(path)}`" in page
        for param in command.params:  # type: ignore[attr-defined]
            if not getattr(param, "hidden", False) and param.param_type_name == "option":
                assert f"`{param.opts[0]}" in page, (path, param.opts)


def test_the_cli_reference_says_what_help_says() -> None:
    page = _script("cli_reference").render()
    generate = typer.main.get_command(app).commands["generate"]  # type: ignore[attr-defined]
    assert generate.help.split("\n")[0] in page
    assert "`--until-passing <int>`" in page
    assert "needs rapport[ray]" in page  # typer's rich escape (`\\[`) undone


def test_the_api_tree_lays_out_every_subpackage(tmp_path: Path) -> None:
    tree = _script("api_source_tree").build_tree(tmp_path)
    mapping = _script("api_source_tree").package_dirs()
    assert "rapport.stages" in mapping
    for name in mapping:
        assert tree.joinpath(*name.split("."), "__init__.py").is_file(), name
    assert (tree / "rapport" / "config" / "run.py").resolve() == ROOT / "config" / "run.py"
