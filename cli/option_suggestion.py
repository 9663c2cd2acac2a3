"""An unknown option's error line suggests at most one real option, and only a close one.

The vendored click lists every option difflib finds near (`--hosts` → "Possible options: --host,
--port"), with a loose cutoff that the shared `--` prefix makes looser still. Here the names are
compared without their dashes, and only the closest one, if it is close, is named.
"""

from __future__ import annotations

import difflib

from typer.exceptions import TyperException

CUTOFF = 0.75  # `--hosts` → `--host` (0.89); `--post` ~ `--port` (0.75); `--token` → none


def closest_option(name: str, options: list[str]) -> str | None:
    """The one option closest to `name`, compared without leading dashes; None if none is close."""
    bare = {option.lstrip("-"): option for option in options}
    found = difflib.get_close_matches(name.lstrip("-"), list(bare), n=1, cutoff=CUTOFF)
    return bare[found[0]] if found else None


def usage_message(error: TyperException) -> str:
    """click's message for a usage error, with an unknown option's suggestion narrowed."""
    name = getattr(error, "option_name", None)
    if name is None or not hasattr(error, "possibilities"):
        return error.format_message()
    command = getattr(getattr(error, "ctx", None), "command", None)
    options = [
        option
        for parameter in getattr(command, "params", [])
        for option in (*getattr(parameter, "opts", []), *getattr(parameter, "secondary_opts", []))
        if option.startswith("-")
    ]
    options.append("--help")
    suggestion = closest_option(name, options)
    message = getattr(error, "message", f"No such option: {name}")
    return f"{message} (did you mean {suggestion}?)" if suggestion else message
