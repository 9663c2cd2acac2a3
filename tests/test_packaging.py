"""The wheel a user installs: one import package, `rapport`, with its data files, so that nothing
generic (`config`, `cli`, `store`) lands in site-packages beside a user's own modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source")  # setuptools builds in the tree: not in ours
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (built,) = out.glob("rapport-*.whl")
    return built


def test_the_wheel_installs_exactly_one_top_level_package(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == {"rapport"}
    assert "License-Expression: Apache-2.0" in text
    for data in ("rapport/store/schema.sql", "rapport/store/views.sql", "rapport/config/prices.yaml",
                 "rapport/config/domains/therapy/domain.yaml", "rapport/engine/backends/__init__.py", "rapport/viewer/static/viewer.js",
                 "rapport/viewer/static/viewer.css", "rapport/py.typed"):  # fmt: skip
        assert data in names


def test_the_unpacked_wheel_runs_from_a_folder_with_its_own_config_package(wheel: Path, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    project = tmp_path / "project"  # a user's project: its own `config` and `cli` come first
    (project / "config").mkdir(parents=True)
    (project / "config" / "__init__.py").write_text("USER_CONFIG = True\n")
    (project / "cli.py").write_text("USER_CLI = True\n")
    probe = (
        "import sys; sys.path[0:0] = [sys.argv[1], sys.argv[2]]\n"
        "import config, cli, rapport\n"
        "from rapport.store.stamp import schema_sql\n"
        "from rapport.config.prices import load_prices\n"
        "from rapport.cli.main import app\n"
        "assert config.USER_CONFIG and cli.USER_CLI\n"
        "assert rapport.__file__.startswith(sys.argv[2]), rapport.__file__\n"
        "assert 'CREATE TABLE' in schema_sql('schema.sql')\n"
        "assert rapport.open.__module__ == 'rapport.corpus'\n"
        "load_prices()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(project), str(site)],
        cwd=project, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
