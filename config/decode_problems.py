"""Decoding that reports every mistake in a file, not just the first one msgspec meets.

A file that decodes has no problems. One that does not is walked field by field (structs,
dicts, lists), so that each wrong value, unknown key and missing field becomes its own
ConfigError, named the way `config.decoding.decode` names keys.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import msgspec

from rapport.config.decoding import decode
from rapport.config.errors import ConfigError

KeyPath = tuple[str | int, ...]

_AT_PATH = re.compile(r" - at `\$([^`]*)`$")


def decode_problems(data: Any, type_: Any, shown_as: str) -> list[ConfigError]:
    """Every decoding problem of `data` as `type_` (empty when it decodes)."""
    try:
        decode(data, type_, shown_as)
    except ConfigError as first:
        found = _walk({} if data is None else data, type_, (), shown_as)
        return found or [first]
    return []


def key_of(path: KeyPath) -> str | None:
    """`("criteria", 1, "min_turns")` -> `criteria[1].min_turns`."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.lstrip(".") or None


def _walk(data: Any, type_: Any, path: KeyPath, shown_as: str) -> list[ConfigError]:
    type_ = _without_annotations(type_)
    origin = typing.get_origin(type_)
    args = typing.get_args(type_)
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct) and isinstance(data, dict):
        return _struct(data, type_, path, shown_as)
    if origin is dict and isinstance(data, dict) and args and args[0] is str:
        found: list[ConfigError] = []
        for key, value in data.items():
            if isinstance(key, str):
                found += _walk(value, args[1], (*path, key), shown_as)
            else:
                where = key_of((*path, str(key)))
                found.append(ConfigError(shown_as, where, "the key is not a string: quote it"))
        return found
    if origin is tuple and isinstance(data, list):
        if len(args) == 2 and args[1] is Ellipsis:
            items = [args[0]] * len(data)
        elif len(args) == len(data):
            items = list(args)
        else:
            return _leaf(data, type_, path, shown_as)
        found = []
        for index, (value, item_type) in enumerate(zip(data, items, strict=True)):
            found += _walk(value, item_type, (*path, index), shown_as)
        return found
    return _leaf(data, type_, path, shown_as)


def _struct(
    data: dict[str, Any], type_: type[msgspec.Struct], path: KeyPath, shown_as: str
) -> list[ConfigError]:
    fields = {field.encode_name: field for field in msgspec.structs.fields(type_)}
    where = key_of(path) or "(top level)"
    found = [
        ConfigError(shown_as, where, f"object contains unknown field {name}")
        for name in data
        if name not in fields
    ]
    for name, field in fields.items():
        if name in data:
            found += _walk(data[name], field.type, (*path, name), shown_as)
        elif field.required:
            found.append(ConfigError(shown_as, where, f"object missing required field {name}"))
    return found


def _leaf(data: Any, type_: Any, path: KeyPath, shown_as: str) -> list[ConfigError]:
    try:
        msgspec.convert(data, type=type_, strict=True)
    except msgspec.ValidationError as error:
        message = str(error)
        inner = _AT_PATH.search(message)
        problem = message[: inner.start()] if inner else message
        key = (key_of(path) or "") + (inner.group(1) if inner else "")
        problem = problem.replace("`", "")
        problem = problem[:1].lower() + problem[1:]
        return [ConfigError(shown_as, key.lstrip(".") or "(top level)", problem)]
    return []


def _without_annotations(type_: Any) -> Any:
    while typing.get_origin(type_) is typing.Annotated:
        type_ = typing.get_args(type_)[0]
    return type_
