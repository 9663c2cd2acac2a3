"""Pipeline stages: generate, judge, evaluate, iterate, dedup, estimate. Each keeps only its plan
and its work; one preparation (stages.preparation) and one shell (stages.shell: lock,
interrupts, RunSession, budget stop) run them all, shown through one progress protocol
(stages.progress).

May import: config, store, engine, authoring, judges, agents, reports, evaluation, cluster.
"""
