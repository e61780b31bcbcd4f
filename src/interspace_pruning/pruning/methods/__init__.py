"""The built-in criteria; importing this package registers them."""

from . import basic, grasp, snip, synflow

__all__ = ["basic", "grasp", "snip", "synflow"]
