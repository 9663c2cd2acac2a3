"""Dataset building, training, merge and GGUF export (the training stages)."""
