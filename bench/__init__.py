"""Benchmarks and the local OpenAI-compatible fake provider they run against."""
