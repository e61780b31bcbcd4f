"""Small shared utilities: atomic file writes, checkpoints of plain tensors, hyperparameter
dataclasses that generate their own CLI flags, and frozen BatchNorm statistics."""
