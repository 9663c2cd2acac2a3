"""YAML files decoded into Structs, with every failure turned into a ConfigError naming the key."""

from __future__ import annotations

import functools
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
import yaml

from rapport.config.errors import ConfigError

T = TypeVar("T")

_PATH_IN_MESSAGE = re.compile(r" - at `(\$[^`]*)`$")
_PATH_SEGMENT = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+|\.\.\.)\]")


def read_yaml(path: Path, shown_as: str) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a ConfigError."""
    text = read_utf8(path, shown_as)
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else "unknown line"
        raise ConfigError(shown_as, where, f"invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(shown_as, None, f"invalid YAML: {error}") from None


def read_text(path: Path, shown_as: str) -> str:
    """Read a text file (a prompt); a missing or empty file is a ConfigError."""
    text = read_utf8(path, shown_as).strip()
    if not text:
        raise ConfigError(shown_as, None, "file is empty")
    return text


def read_utf8(path: Path, shown_as: str) -> str:
    """A file's text; a missing file or one that is not UTF-8 is a ConfigError naming the line."""
    if not path.is_file():
        raise ConfigError(shown_as, None, "missing file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        raise ConfigError(
            shown_as, f"line {line}", f"not UTF-8 text (byte 0x{byte:02x}); save it as UTF-8"
        ) from None


def decode(data: Any, type_: type[T], shown_as: str) -> T:
    """Convert parsed YAML into `type_`; unknown keys and wrong types name the offending key."""
    if data is None:
        data = {}
    try:
        return msgspec.convert(_with_default_tags(data, type_info(type_)), type=type_, strict=True)
    except msgspec.ValidationError as error:
        message = str(error)
        match = _PATH_IN_MESSAGE.search(message)
        problem = message[: match.start()] if match else message
        key = _readable_key(data, type_, match.group(1)) if match else None
        raise ConfigError(shown_as, key, _plain(problem)) from None


@functools.cache
def type_info(type_: Any) -> mi.Type:
    return mi.type_info(type_)


def _with_default_tags(data: Any, info: mi.Type) -> Any:
    """`data` with the tag of a tagged union's default member filled in where a mapping has
    none (a backend without `provider:` is the default provider): msgspec itself requires the
    tag. Only mappings that change are copied; whatever fails to match is left to msgspec."""
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        info = _member_for(data, info)
        if isinstance(info, mi.StructType) and info.tag_field and data.get(info.tag_field) is None:
            data = {**data, info.tag_field: info.tag}  # absent, or YAML's `null` (tag "null")
    if isinstance(info, mi.StructType) and isinstance(data, dict):
        changed = {}
        for field in info.fields:
            if field.encode_name in data:
                value = _with_default_tags(data[field.encode_name], field.type)
                if value is not data[field.encode_name]:
                    changed[field.encode_name] = value
        return {**data, **changed} if changed else data
    if isinstance(info, mi.DictType) and isinstance(data, dict):
        values = {key: _with_default_tags(value, info.value_type) for key, value in data.items()}
        return values if any(values[k] is not data[k] for k in data) else data
    if isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType) and isinstance(data, list):
        items = [_with_default_tags(item, info.item_type) for item in data]
        return items if any(a is not b for a, b in zip(items, data, strict=True)) else data
    return data


def _member_for(data: Any, union: mi.UnionType) -> mi.Type | None:
    """The union member `data` would decode as (a mapping with no tag: the default's)."""
    if not isinstance(data, dict):
        return next((t for t in union.types if isinstance(t, mi.ListType | mi.VarTupleType)), None)
    structs = [t for t in union.types if isinstance(t, mi.StructType)]
    tagged = [t for t in structs if t.tag_field is not None]
    if not tagged:
        return structs[0] if len(structs) == 1 else None
    tag_field = tagged[0].tag_field
    tag = data.get(tag_field, getattr(tagged[0].cls, "default_tag", None))
    return next((t for t in tagged if t.tag == ("null" if tag is None else tag)), None)


def load_file(path: Path, type_: type[T], shown_as: str) -> T:
    """Read and decode one YAML file."""
    return decode(read_yaml(path, shown_as), type_, shown_as)


def _plain(problem: str) -> str:
    problem = problem.replace("`", "")
    return problem[0].lower() + problem[1:] if problem else problem


def _readable_key(data: Any, type_: Any, path: str) -> str:
    """Turn msgspec's `$.a[...].b` into `a.<actual key>.b`, finding the dict key that failed."""
    parts: list[str] = []
    for field, index in _PATH_SEGMENT.findall(path):
        type_ = _unwrap(type_)
        if field:
            parts.append(field)
            data = data.get(field) if isinstance(data, dict) else None
            type_ = _field_type(type_, field)
        elif index == "...":
            value_type = _dict_value_type(type_)
            bad_key = _first_invalid_key(data, value_type)
            parts.append(str(bad_key))
            data = data.get(bad_key) if isinstance(data, dict) else None
            type_ = value_type
        else:
            position = int(index)
            parts.append(f"[{position}]")
            data = data[position] if isinstance(data, list) and position < len(data) else None
            type_ = _item_type(type_, position)
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _unwrap(type_: Any) -> Any:
    while True:
        origin = typing.get_origin(type_)
        if origin is typing.Annotated:
            type_ = typing.get_args(type_)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(type_) if arg is not type(None)]
            type_ = options[0] if len(options) == 1 else Any
        else:
            return type_


def _field_type(struct_type: Any, field: str) -> Any:
    try:
        return typing.get_type_hints(struct_type, include_extras=True)[field]
    except (KeyError, TypeError):
        return Any


def _dict_value_type(type_: Any) -> Any:
    args = typing.get_args(type_)
    return args[1] if typing.get_origin(type_) is dict and len(args) == 2 else Any


def _item_type(type_: Any, position: int) -> Any:
    args = typing.get_args(type_)
    if not args:
        return Any
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return args[position] if position < len(args) else args[0]


def _first_invalid_key(data: Any, value_type: Any) -> Any:
    if not isinstance(data, dict):
        return "..."
    for key, value in data.items():
        if not isinstance(key, str):
            return key
        try:
            msgspec.convert(value, type=value_type, strict=True)
        except msgspec.ValidationError:
            return key
    return "..."
