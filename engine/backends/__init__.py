"""Concrete backends: thin adapters from the Backend interface to a provider (part of the
engine's layer: engine/__init__.py says what it may import)."""
