"""Concrete backends: thin adapters from the Backend interface to a provider."""
