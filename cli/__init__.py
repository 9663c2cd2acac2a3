"""The `rapport` command line (typer + rich): parses flags, calls the layers below, prints.

The top layer: nothing imports it.
May import: config, store, engine, fakes, authoring, judges, agents, reports, evaluation,
cluster, stages, training, viewer, bench, rapport.
"""
