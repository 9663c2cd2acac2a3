"""The two agents of a conversation (user simulator, assistant) and how a run drives them.

Above judges/: the user side's cheap checks run as its turns are stored.
May import: config, store, engine, judges.
"""
