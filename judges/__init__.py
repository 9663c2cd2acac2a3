"""LLM-as-judge rubric scoring (the judge stage)."""
