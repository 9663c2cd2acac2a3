"""The `rapport` command line (typer + rich): parses flags, builds the same request objects the
public API builds, calls the API (rapport.Corpus's functions: rapport._stages for the stages,
rapport._reads for what reads or merges a database) and prints. It opens no database and holds
no SQL (tests/test_layers.py checks that no module here imports the store or duckdb).

The top layer: nothing imports it.
May import: config, engine, fakes, authoring, judges, agents, reports, evaluation,
cluster, stages, training, viewer, bench, rapport.
"""
