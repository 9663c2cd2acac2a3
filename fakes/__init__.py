"""Stand-ins for the outside world, shared by tests and benchmarks: the local OpenAI- and
Anthropic-compatible fake provider (real HTTP, real rate limits, latency, faults, prompt
caching, batch APIs), its canned replies, and the same provider in a process of its own.

Nothing of the product imports it: only bench/, the command line (`rapport bench provider`)
and the tests.
May import: config, store, engine.
"""
