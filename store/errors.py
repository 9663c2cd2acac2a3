"""Errors raised by the store, shown to the user as one line."""

from __future__ import annotations

from config.errors import RapportError


class StoreError(RapportError):
    """The database file cannot be opened, is locked, or a query is refused."""
