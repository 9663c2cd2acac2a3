"""One DuckDB file per project: schema, the single writer actor, and read-only queries."""
