"""Masks over prunable tensors (SP weights or IP coefficients) and sparsity accounting."""

from .dense_grad import capture_enabled, dense_gradients, no_gradient_capture
from .mask import Mask
from .parametrization import MaskedParametrization, MaskedWeight
from .prunable import (
    PrunableTensor,
    apply_masks,
    attach_masks,
    has_masks,
    keep_masked,
    prunable,
)
from .report import LayerSparsity, SparsityReport, sparsity_report

__all__ = [
    "LayerSparsity",
    "Mask",
    "MaskedParametrization",
    "MaskedWeight",
    "PrunableTensor",
    "SparsityReport",
    "apply_masks",
    "attach_masks",
    "capture_enabled",
    "dense_gradients",
    "has_masks",
    "keep_masked",
    "no_gradient_capture",
    "prunable",
    "sparsity_report",
]
