"""Async actor runtime: plan, backends, conversations as pairs of actors, the scheduler."""
