"""Pipeline stages: generate, judge, evaluate, iterate, dedup, estimate, each one run session
over the layers below it.

May import: config, store, engine, authoring, judges, agents, reports, evaluation, cluster.
"""
