"""One DuckDB transaction as a `with` block: everything inside commits together or not at all.

Written once so that every multi-statement write (a batch, a migration, a review, a merge) ends
the same way: a failed statement, a failed COMMIT or a cancellation rolls back and re-raises
the error that caused it, never the rollback's own complaint."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb


@contextlib.contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN on entry, COMMIT when the block ends, ROLLBACK (then re-raise) when it raises."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
            conn.execute("ROLLBACK")
        raise
