"""Benchmarks: the code behind the README's measured figures (the fake provider they run
against lives in fakes/).

Above stages/ and training/: a benchmark runs the real stages against the fakes.
May import: config, store, engine, fakes, authoring, judges, agents, reports, evaluation,
cluster, stages, training, viewer, rapport.
"""
