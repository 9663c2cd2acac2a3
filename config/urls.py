"""Base URLs of providers checked when the config is read, so a typo is "invalid URL", not a
"cannot reach" after the first call."""

from __future__ import annotations

from urllib.parse import urlsplit

URL_SCHEMES = ("http", "https")


def url_problem(url: str) -> str | None:
    """What makes `url` unusable as a provider's base URL, or None when it is fine."""
    if not url or any(character.isspace() for character in url):
        return "invalid URL: it is empty or has spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check (a bad one raises)
    except ValueError as error:
        return f"invalid URL: {error}"
    if parts.scheme not in URL_SCHEMES:
        return "invalid URL: it must start with http:// or https://"
    if not parts.hostname:
        return "invalid URL: it names no host"
    return None
