"""Known mutants must be killed: apply each deliberate breakage to a copy of the source and run
the tests that should catch it; exit 1 if any mutant survives.

The list lives in scripts/mutants.toml (one entry per bug ever fixed or behaviour ever pinned).
A mutant whose text no longer matches the source fails the run too: a stale mutant proves
nothing. A mutant counts as killed only when its tests *fail* (pytest exit 1), not when they
cannot even be collected (exit 2+), so a typo in a replacement cannot pass for a kill.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS_FILE = ROOT / "scripts" / "mutants.toml"
PYTEST_TESTS_FAILED = 1
TIMEOUT_S = 600
WORKERS = 2  # mutants run two at a time, each in its own copy of the source (two cores)


@dataclass(frozen=True)
class Edit:
    file: str
    find: str
    replace: str


@dataclass(frozen=True)
class Mutant:
    name: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]


def load_mutants(path: Path) -> list[Mutant]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [
        Mutant(
            name=entry["name"],
            edits=tuple(Edit(e["file"], e["find"], e["replace"]) for e in entry["edit"]),
            tests=tuple(entry["tests"]),
        )
        for entry in data["mutant"]
    ]


def copy_source(destination: Path) -> None:
    """Copy the files git knows (tracked and untracked-not-ignored): the source as committed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        relative = raw.decode()
        source = ROOT / relative
        if not source.is_file():
            continue  # deleted in the working tree
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def apply(mutant: Mutant, tree: Path) -> str | None:
    """Apply every edit; returns a problem when an edit does not match exactly once."""
    for edit in mutant.edits:
        path = tree / edit.file
        text = path.read_text(encoding="utf-8")
        found = text.count(edit.find)
        if found != 1:
            return f"{edit.file}: the text to replace occurs {found} times (expected once)"
        path.write_text(text.replace(edit.find, edit.replace), encoding="utf-8")
    return None


def run_tests(mutant: Mutant, tree: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    return result.returncode, result.stdout[-2000:] + result.stderr[-2000:]


def _judge_in(mutant: Mutant, pristine: Path, tree: Path) -> bool:
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(pristine, tree)
    started = time.monotonic()
    problem = apply(mutant, tree)
    killed = False
    if problem is None:
        code, output = run_tests(mutant, tree)
        killed = code == PYTEST_TESTS_FAILED
        if killed:
            verdict = "killed"
        else:
            verdict = "SURVIVED" if code == 0 else f"NOT KILLED (pytest exit {code})"
            print(output, file=sys.stderr)
    else:
        verdict = f"STALE ({problem})"
    print(f"{verdict:>10}  {time.monotonic() - started:5.1f} s  {mutant.name}", flush=True)
    return killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="only", help="run only mutants whose name contains this")
    args = parser.parse_args()
    mutants = [m for m in load_mutants(MUTANTS_FILE) if not args.only or args.only in m.name]
    if not mutants:
        print(f"error: no mutant's name contains {args.only!r}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rapport-mutants-") as scratch:
        pristine = Path(scratch) / "pristine"
        copy_source(pristine)
        trees: queue.SimpleQueue[Path] = queue.SimpleQueue()
        for worker in range(WORKERS):
            trees.put(Path(scratch) / f"mutant-{worker}")

        def judge(mutant: Mutant) -> bool:
            """Run one mutant in a free tree; True when it was killed."""
            tree = trees.get()
            try:
                return _judge_in(mutant, pristine, tree)
            finally:
                trees.put(tree)

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            killed = list(pool.map(judge, mutants))
    survivors = killed.count(False)
    print(f"mutants: {len(mutants) - survivors} killed, {survivors} not killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
