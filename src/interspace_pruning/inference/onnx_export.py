"""ONNX export of the folded (dense) model, for deployment anywhere."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..interspace import fold


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...]) -> Path:
    """Fold ``model`` (dense spatial weights, plain torch modules) and export it to ONNX.

    Needs the ``onnx`` and ``onnxscript`` packages (``pip install interspace-pruning[onnx]``).
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ValueError("ONNX export needs: pip install onnx onnxscript") from None
    plain = fold(model).eval()
    example = torch.zeros((1, *input_shape), dtype=next(plain.parameters()).dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        plain,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        dynamo=True,
    )
    return path
