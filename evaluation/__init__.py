"""`rapport eval`: two assistants on the same held-out scenarios, judged and compared."""
