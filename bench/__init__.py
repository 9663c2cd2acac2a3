"""Benchmarks: the code behind the README's measured figures (the fake provider they run
against lives in fakes/)."""
