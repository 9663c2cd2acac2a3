"""Pipeline stages: generate, judge, evaluate, iterate, each one run session."""
