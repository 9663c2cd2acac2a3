"""`rapport eval`: two assistants on the same held-out scenarios, judged and compared.

May import: config, store, engine, judges.
"""
