"""Inference: cost accounting, the compact sparse file, the sparse engine, ONNX export."""

from .costs import CostReport, LayerCost, costs
from .engine import (
    SparseIPConv2d,
    SparseLinear,
    SparseSPConv2d,
    register_sparse_conv,
    sparse_inference,
)
from .onnx_export import export_onnx
from .sparse_format import export_sparse, load_sparse

__all__ = [
    "CostReport",
    "LayerCost",
    "SparseIPConv2d",
    "SparseLinear",
    "SparseSPConv2d",
    "costs",
    "export_onnx",
    "export_sparse",
    "load_sparse",
    "register_sparse_conv",
    "sparse_inference",
]
