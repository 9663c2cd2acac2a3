"""Domain authoring: drafting a domain folder from a description, previewing it.

May import: config, store, engine.
"""
