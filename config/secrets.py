"""Redaction: the one filter every text passes before it reaches DuckDB, the terminal, a report
or a dataset, so a provider (or proxy) that echoes the API key in an error body cannot leak it.

A `Redactor` removes three things, replacing each with `REDACTED`:
- the values of the secrets this command read from the environment (the configured
  `api_key_env` variables, the default key variables, HF_TOKEN, and any variable whose name says
  it is a secret), also as they appear JSON-escaped or URL-encoded;
- credentials in URLs: userinfo (`https://user:KEY@host`) and key-like query parameters;
- key-shaped tokens (`sk-…`, `sk-ant-…`, `hf_…`, `Bearer …`, `api_key: …`) whatever their source.

It is an immutable value built once when a command starts, from the environment and the
variable names the run config gives (known only then, so a fixed list could not cover them), and
passed down to whatever writes text: the store writer, the live display, the report, the dataset
build (no module state to mutate). `PATTERNS_ONLY` applies the patterns alone: the default where
no environment value can reach the text, and a safe floor where a caller passes nothing.
Cost: a few substring tests per text (8 µs for a 400-character message on a loaded 2-core
machine, where Arrow conversion of the same row costs 2 µs); the regexes run
only on text that holds one of their trigger substrings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

import msgspec

from rapport.config.constants import MIN_SECRET_CHARS

REDACTED = "[REDACTED]"
# What ends a text cut to a length (engine.backends.http_errors.short_message): a secret cut
# there is no longer whole, so its remaining prefix is looked for just before it.
TRUNCATION_MARK = "…"

# Read as secrets whenever set, besides the variables a run config names in `api_key_env`.
SECRET_ENV_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Any other variable whose name says it holds a secret is read as one too.
_SECRET_NAME = re.compile(r"(?i)(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$")

_QUERY_KEYS = (
    r"api[-_]?key|apikey|key|token|access[-_]?token|auth[-_]?token|refresh[-_]?token|"
    r"id[-_]?token|secret|client[-_]?secret|password|passwd|sig|signature|code|auth"
)
_FIELD_NAMES = (
    r"x-api-key|api[-_]?key|apikey|access[-_]?token|auth[-_]?token|refresh[-_]?token|"
    r"client[-_]?secret|secret[-_]?key|password|passwd"
)
# Each field name above contains one of these (lowercased): words such as "key" or "token" alone
# are too common in conversations to be worth a scan.
_FIELD_TRIGGERS = (
    "api_key", "api-key", "apikey", "_token", "-token", "_secret", "-secret", "password", "passwd"
)  # fmt: skip
# (triggers, pattern, replacement) in order: the specific shapes first, so a Bearer header is not
# cut in two by the field rule. A pattern runs only when one of its triggers is in the lowercased
# text: most text holds none, and a substring test is far cheaper than a regex scan.
_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # scheme://user:password@host and scheme://token@host
    (("://",), re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@"), rf"\1{REDACTED}@"),
    # ?api-key=KEY, &token=KEY
    (("=",), re.compile(rf"(?i)([?&;](?:{_QUERY_KEYS})=)[^&#\s\"'<>]+"), rf"\1{REDACTED}"),
    (("bearer",), re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{REDACTED}"),
    (
        ("authorization",),
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?basic\s+)[A-Za-z0-9+/=]+"),
        rf"\1{REDACTED}",
    ),
    (("sk-",), re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),
    (("hf_",), re.compile(r"\bhf_[A-Za-z0-9]{8,}"), REDACTED),
    # "api_key": "KEY", x-api-key: KEY, password=KEY (the name is kept, the value goes)
    (
        _FIELD_TRIGGERS,
        re.compile(
            rf"(?i)\b((?:{_FIELD_NAMES})[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"',;&}}]+"
        ),
        rf"\1{REDACTED}",
    ),
)


class Redactor(msgspec.Struct, frozen=True):
    """Removes secrets from text. `secrets` are literal values (with their escaped forms),
    longest first so a secret containing another is removed whole."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], names: Iterable[str] = ()) -> Redactor:
        """The secrets of this command: the values of `names` (the `api_key_env` variables a run
        config reads), of SECRET_ENV_VARS and of every variable named like a secret. Values
        shorter than MIN_SECRET_CHARS are skipped: removing "1" everywhere would wreck text."""
        wanted = set(names) | set(SECRET_ENV_VARS)
        wanted |= {name for name in environ if _SECRET_NAME.search(name)}
        values = {environ.get(name, "").strip() for name in wanted}
        forms = {
            form for value in values if len(value) >= MIN_SECRET_CHARS for form in _forms(value)
        }
        return cls(tuple(sorted(forms, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if TRUNCATION_MARK in text:
            text = self._cut_secrets(text)
        lowered = text.lower()
        for triggers, pattern, replacement in _PATTERNS:
            if any(trigger in lowered for trigger in triggers):
                text = pattern.sub(replacement, text)
        return text

    def _cut_secrets(self, text: str) -> str:
        """A secret's prefix (of MIN_SECRET_CHARS or more) right before a truncation mark."""
        for secret in self.secrets:
            for length in range(len(secret) - 1, MIN_SECRET_CHARS - 1, -1):
                cut = secret[:length] + TRUNCATION_MARK
                if cut in text:
                    text = text.replace(cut, REDACTED + TRUNCATION_MARK)
                    break
        return text

    def optional(self, text: str | None) -> str | None:
        """None stays None (nullable columns)."""
        return None if text is None else self(text)


PATTERNS_ONLY = Redactor()  # for text no environment value can reach


def _forms(value: str) -> set[str]:
    """A secret as it may be echoed: raw, JSON-escaped (\\/ too) and URL-encoded."""
    escaped = json.dumps(value)[1:-1]
    return {value, escaped, escaped.replace("/", "\\/"), quote(value, safe="")}


def looks_like_secret(value: str) -> bool:
    """True for a value that is a key rather than the name of a variable holding one (a key
    pasted into `api_key_env`): it must then never be printed back."""
    return Redactor()(value) != value or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value)
