"""Checks a domain folder and reports every problem at once: each file's decoding problems and
the consistency checks of `config.validation`, one ConfigError each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from rapport.config.decode_problems import decode_problems
from rapport.config.decoding import read_text, read_yaml
from rapport.config.domain import Domain, Prompts
from rapport.config.errors import ConfigError
from rapport.config.loader import (
    DOMAIN_PARTS,
    OPTIONAL_PARTS,
    PROMPT_NAMES,
    TEMPLATE_DOMAIN,
    domain_files,
    load_domain,
    shipped_domain_dir,
)
from rapport.config.validation import problems as consistency_problems

# Consistency checks that read one file and report in another: (reported in, depends on).
_CROSS_FILE = (("simulator", "personas"),)


class DomainCheck(msgspec.Struct, frozen=True):
    """The outcome of checking a folder: the domain when it is valid, else every problem."""

    directory: Path
    domain: Domain | None
    problems: tuple[ConfigError, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_domain(directory: Path) -> DomainCheck:
    """Every problem in a domain folder, grouped by file in the loader's order.

    A file that does not decode is reported and stood in for by the template's part, so the
    consistency checks of the other files still run; their problems in, or caused by, a
    stood-in part are left out.
    """
    if not directory.is_dir():
        problem = ConfigError(str(directory), None, "domain folder not found")
        return DomainCheck(directory, None, (problem,))
    files = domain_files(directory)
    found: list[ConfigError] = []
    parts: dict[str, Any] = {}
    for part, (_, type_) in DOMAIN_PARTS.items():
        decoded = _decode_part(files[part], type_, found)
        if decoded is not None:
            parts[part] = decoded
    for part, (_, type_) in OPTIONAL_PARTS.items():
        if Path(files[part]).is_file():
            decoded = _decode_part(files[part], type_, found)
            if decoded is not None:
                parts[part] = decoded
    prompts: dict[str, str] = {}
    for name in PROMPT_NAMES:
        shown_as = files[f"prompt:{name}"]
        try:
            prompts[name] = read_text(Path(shown_as), shown_as)
        except ConfigError as error:
            found.append(error)
    failed = {part for part in DOMAIN_PARTS if part not in parts}
    failed |= {part for part in OPTIONAL_PARTS if Path(files[part]).is_file() and part not in parts}
    failed |= {f"prompt:{name}" for name in PROMPT_NAMES if name not in prompts}
    domain = (
        _with_stand_ins(parts, prompts) if failed else Domain(prompts=Prompts(**prompts), **parts)
    )
    found += _trustworthy(consistency_problems(domain, files), files, failed)
    order = {file: index for index, file in enumerate(files.values())}
    found.sort(key=lambda problem: order.get(problem.file, len(order)))  # stable: file order
    return DomainCheck(directory, None if found else domain, tuple(found))


def _decode_part(shown_as: str, type_: Any, found: list[ConfigError]) -> Any | None:
    try:
        data = read_yaml(Path(shown_as), shown_as)
    except ConfigError as error:
        found.append(error)
        return None
    problems = decode_problems(data, type_, shown_as)
    found += problems
    return None if problems else msgspec.convert({} if data is None else data, type_, strict=True)


def _with_stand_ins(parts: dict[str, Any], prompts: dict[str, str]) -> Domain:
    template = load_domain(shipped_domain_dir(TEMPLATE_DOMAIN))
    stand_in = {part: getattr(template, part) for part in DOMAIN_PARTS}
    stand_in_prompts = {name: getattr(template.prompts, name) for name in PROMPT_NAMES}
    return Domain(prompts=Prompts(**(stand_in_prompts | prompts)), **(stand_in | parts))


def _trustworthy(
    problems: list[ConfigError], files: dict[str, str], failed: set[str]
) -> list[ConfigError]:
    """Drop the problems found in stood-in parts or caused by them."""
    untrusted = {files[part] for part in failed}
    untrusted |= {files[shown] for shown, source in _CROSS_FILE if source in failed}
    return [problem for problem in problems if problem.file not in untrusted]
