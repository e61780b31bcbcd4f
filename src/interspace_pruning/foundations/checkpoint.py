"""Saving and loading tensors safely: atomic writes, ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .io import atomic_write_bytes


def save_tensors(path: str | Path, obj: dict) -> None:
    """``torch.save`` a dict of tensors (and plain values) atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_tensors(path: str | Path) -> dict:
    """Load a file written by :func:`save_tensors`; never unpickles code."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of all kinds: corrupt or not a checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return obj
