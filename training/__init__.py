"""Dataset building, training, merge and GGUF export (the training stages).

Above stages/: a dataset build runs the dedup stage first.
May import: config, store, engine, judges, stages.
"""
