"""Small shared utilities: atomic file writes, errors, hyperparameter dataclasses, seeding."""
