"""Reports over a judged corpus: the judging report and the figures an iteration compares.

May import: config, store, engine, judges.
"""
