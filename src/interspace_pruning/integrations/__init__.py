"""Adapters to training frameworks. Each is imported on its own (``import
interspace_pruning.integrations.lightning``) so that the framework stays optional."""
