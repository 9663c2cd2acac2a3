"""Domain and run configuration: YAML and Markdown decoded into validated msgspec Structs, the
named constants, the errors every user-facing problem becomes, and the few helpers every layer
shares (secrets redaction, the first leaf of an exception group).

The bottom layer (tests/test_layers.py checks every folder's line):
May import: nothing.
"""
