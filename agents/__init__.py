"""The two agents of a conversation (user simulator, assistant) and how a run drives them."""
