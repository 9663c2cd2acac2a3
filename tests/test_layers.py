"""Imports point down the layers. Each folder's `__init__.py` docstring says what the folder
owns and, on a `May import:` line, which other folders its modules may import; this reads every
module's imports (with ast, function-level ones included) and fails on one that points up."""

from __future__ import annotations

import ast
import graphlib
import re
import tomllib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE = "rapport"  # the one import package; `import rapport` alone is its public API (rapport/)
_PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]
# Every folder the wheel installs as rapport.<folder> (a subpackage belongs to its folder).
FOLDERS = sorted({path.split("/")[0] for name, path in _PACKAGE_DIRS.items() if name != PACKAGE})
LAYERS = frozenset([*FOLDERS, PACKAGE])
_MAY_IMPORT = re.compile(r"^May import:\s*(.*?)\.\s*$", re.MULTILINE | re.DOTALL)


def docstring(folder: Path) -> str:
    return ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""


def may_import(text: str) -> frozenset[str] | None:
    """The folders a docstring's `May import:` line names (`nothing`: none); None without one."""
    found = _MAY_IMPORT.search(text)
    if found is None:
        return None
    names = [name for name in re.split(r"[\s,]+", found.group(1)) if name]
    return frozenset() if names == ["nothing"] else frozenset(names)


def imported_layers(module: Path) -> list[tuple[str, int]]:
    """(layer, line) for each import of ours in a module: `rapport.<folder>…` is that folder,
    `rapport` itself (or a name from it that is no folder) the public API."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}:{node.lineno}: a relative import"
            names = [node.module or ""]
            if node.module == PACKAGE:
                names = [f"{PACKAGE}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE:
                layer = parts[1] if len(parts) > 1 and parts[1] in FOLDERS else PACKAGE
                found.append((layer, node.lineno))
    return found


def upward_imports(folder: Path, layer: str, allowed: frozenset[str]) -> list[str]:
    if layer == PACKAGE:  # its own modules only; `python -m rapport` is the command line's
        modules = [m for m in sorted(folder.glob("*.py")) if m.name != "__main__.py"]
    else:
        modules = sorted(folder.rglob("*.py"))
    return [
        f"{module.relative_to(folder.parent)}:{line} imports {target}"
        for module in modules
        for target, line in imported_layers(module)
        if target != layer and target not in allowed
    ]


def _declared() -> dict[str, frozenset[str]]:
    layers = {name: may_import(docstring(REPOSITORY / name)) for name in sorted(LAYERS)}
    return {name: allowed for name, allowed in layers.items() if allowed is not None}


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_folder_says_what_it_owns_and_what_it_may_import(folder):
    text = docstring(REPOSITORY / folder)
    allowed = may_import(text)
    assert allowed is not None, f"{folder}/__init__.py: no 'May import:' line in its docstring"
    assert text.split("May import:")[0].strip(), f"{folder}/__init__.py: says nothing it owns"
    assert allowed <= LAYERS - {folder}, f"{folder}: unknown {sorted(allowed - LAYERS)}"


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_import_points_down_the_layers(folder):
    allowed = _declared().get(folder, frozenset())
    assert upward_imports(REPOSITORY / folder, folder, allowed) == []


def test_the_public_api_is_a_client_of_the_stages_like_the_command_line():
    allowed = may_import(docstring(REPOSITORY / PACKAGE))
    assert allowed is not None, "rapport/__init__.py: no 'May import:' line in its docstring"
    assert "cli" not in allowed and "bench" not in allowed
    assert upward_imports(REPOSITORY / PACKAGE, PACKAGE, allowed) == []


def test_the_layers_have_no_cycle_and_nothing_imports_the_command_line():
    declared = _declared()
    graphlib.TopologicalSorter(declared).prepare()  # raises CycleError on a cycle
    assert [name for name, allowed in declared.items() if "cli" in allowed] == []


# The command line is a thin layer over the public API (issue 23): it parses flags, calls
# `rapport` (rapport.Corpus, rapport._stages, rapport._reads …) and prints; it opens no database
# and holds no SQL. view_command.py (`view`, `review`) is being rewritten on its own branch.
_CLI_NOT_YET_THIN: frozenset[str] = frozenset()
_DATABASE_MODULES = ("duckdb", f"{PACKAGE}.store")


def database_imports(module: Path) -> list[str]:
    """`line: name` for each import of the store (or of DuckDB itself) in a module."""
    found = []
    for node in ast.walk(ast.parse(module.read_text(), str(module))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.module == PACKAGE:
                names = [f"{PACKAGE}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [
            f"{node.lineno}: {name}"
            for name in names
            if any(name == db or name.startswith(f"{db}.") for db in _DATABASE_MODULES)
        ]
    return found


def test_the_command_line_imports_neither_the_store_nor_duckdb():
    modules = sorted((REPOSITORY / "cli").rglob("*.py"))
    assert len(modules) > 10
    found = [
        f"{module.relative_to(REPOSITORY)}:{line}"
        for module in modules
        if module.name not in _CLI_NOT_YET_THIN
        for line in database_imports(module)
    ]
    assert found == []


def test_a_store_import_in_a_function_is_found(tmp_path):
    module = tmp_path / "command.py"
    module.write_text(
        "from rapport._reads import sql_rows\n"
        "from rapport.stages.generate import GenerateRequest\n"
        "def late():\n"
        "    from rapport.store.query import query\n"
        "    import duckdb\n"
        "    from rapport import store\n"
    )
    assert database_imports(module) == [
        "4: rapport.store.query",
        "5: duckdb",
        "6: rapport.store",
    ]


def test_an_upward_import_inside_a_function_is_found(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "__init__.py").write_text('"""Rows.\n\nMay import: config.\n"""\n')
    (folder / "reads.py").write_text(
        "from rapport.config.errors import RapportError\n"
        "from rapport import store\n"
        "def late():\n"
        "    from rapport.engine.types import ChatMessage\n"
        "    import rapport\n"
    )
    allowed = may_import(docstring(folder))
    assert allowed == frozenset({"config"})
    assert upward_imports(folder, "store", allowed) == [
        "store/reads.py:4 imports engine",
        "store/reads.py:5 imports rapport",
    ]
