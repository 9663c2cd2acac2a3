"""A model's draft reply turned into domain files: parsed, checked for shape, written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rapport.authoring.draft_prompt import DRAFT_SECTIONS


class _DraftDumper(yaml.SafeDumper):
    """Block style, except short lists of plain values, written inline like `[1, 3]`."""


def _list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    inline = all(isinstance(item, (int, float, str)) and len(str(item)) < 40 for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=inline)


_DraftDumper.add_representer(list, _list)

_FENCED = re.compile(r"```(?:ya?ml)?[ \t]*\n(.*?)```", re.DOTALL)
_YAML_WIDTH = 96


def parse_draft(text: str) -> tuple[dict[str, Any], list[str]]:
    """The draft's sections, or the problems that keep it from being one."""
    fenced = _FENCED.search(text)
    source = fenced.group(1) if fenced else text
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        return {}, [f"the reply is not valid YAML{where}: {problem}"]
    expected = ", ".join(DRAFT_SECTIONS)
    if not isinstance(data, dict):
        return {}, [f"the reply must be one YAML mapping with the keys {expected}"]
    problems = [
        f"unknown top-level key {key!r} (expected {expected})"
        for key in data
        if key not in DRAFT_SECTIONS
    ]
    for key in DRAFT_SECTIONS:
        if key not in data:
            problems.append(f"missing top-level key {key!r}")
        elif not isinstance(data[key], dict):
            problems.append(f"{key}: expected a mapping like {DRAFT_SECTIONS[key]}")
    return ({} if problems else {k: data[k] for k in DRAFT_SECTIONS}), problems


def write_draft(sections: Mapping[str, Any], directory: Path, template: Path, note: str) -> None:
    """Write each section over its file, under the template's explanatory comments."""
    for key, filename in DRAFT_SECTIONS.items():
        comments = leading_comments((template / filename).read_text(encoding="utf-8"))
        body = yaml.dump(
            sections[key], Dumper=_DraftDumper, sort_keys=False, allow_unicode=True,
            width=_YAML_WIDTH,
        )  # fmt: skip
        (directory / filename).write_text(f"{comments}# {note}\n\n{body}", encoding="utf-8")


def leading_comments(text: str) -> str:
    """The comment block a file starts with (the field explanations), ending in a newline."""
    kept: list[str] = []
    for line in text.splitlines():
        if line.startswith("#") or (kept and not line.strip()):
            kept.append(line)
        else:
            break
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept) + "\n#\n" if kept else ""
