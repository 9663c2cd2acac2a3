"""The one error type every configuration problem becomes: one line, naming file and key."""

from __future__ import annotations


class RapportError(Exception):
    """A problem caused by the user's input; the command line prints it as one line."""


class BadInput(RapportError):
    """The input (a flag, an argument, a file, a database) cannot be used: nothing was run.
    The command line exits 2 on it."""


class ConfigError(BadInput):
    """A configuration file is missing, malformed or inconsistent."""

    def __init__(self, file: str, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")
