"""One DuckDB file per project: the schema and its views, the single writer, the transaction
helper, and the typed reads every stage, report and page goes through.

Below the engine: the store knows rows, not how they were produced.
May import: config.
"""
