"""ONNX export of the folded (dense) model, for deployment anywhere."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..interspace import fold


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...]) -> Path:
    """Fold ``model`` (dense spatial weights, plain torch modules) and export it to ONNX.

    Needs the ``onnx`` and ``onnxscript`` packages (``pip install -e ".[onnx]"`` in the repository).
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ValueError("ONNX export needs: pip install onnx onnxscript") from None
    plain = fold(model).eval()
    first = next(plain.parameters())
    example = torch.zeros((1, *input_shape), dtype=first.dtype, device=first.device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written beside the target, then renamed: a failed export leaves no half-written file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.onnx.export(
            plain,
            (example,),
            tmp,
            input_names=["input"],
            output_names=["logits"],
            # by position: the name of forward's argument differs between models
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
        )
        os.replace(tmp, path)
    except Exception as e:  # torch.export's errors run to pages: one line names the cause
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(
            f"ONNX export of {type(model).__name__} failed ({type(e).__name__}: {first_line}); "
            "the sparse and torch timings do not need it"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
