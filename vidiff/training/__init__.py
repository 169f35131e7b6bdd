"""Training: the loop, EMA, and crash-safe checkpoints."""
