"""Async actor runtime: the plan, the backends, the gateway (limits, retries, accounting),
budgets and leases, progress counters.

The engine plays calls; it does not open the database (it may name the store's row types).
May import: config, store.
"""
