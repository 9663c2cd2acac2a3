"""LLM-as-judge rubric scoring of both sides, the cheap model-free checks of the user side,
near-duplicate detection: judging one conversation, not running a stage.

May import: config, store, engine, authoring.
"""
