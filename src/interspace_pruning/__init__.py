"""Interspace pruning (IP) and standard unstructured pruning (SP) for CNNs.

Convert a model to the interspace representation (each KxK filter a sparse combination of
a trainable filter basis), then prune its coefficients with any unstructured method::

    import interspace_pruning as ip

    model = ip.models.get("resnet20", num_classes=10)
    ip.to_interspace(model)                      # omit this line for SP
    ip.prune(model, "snip", 0.95, data=batches)  # batches of (inputs, targets)
    print(ip.sparsity_report(model))
    plain = ip.fold(model)                       # plain torch model for deployment
"""

from . import bases, inference, models, pruning
from .bases import FilterBasis, basis_names, filter_bases
from .inference import costs, export_onnx, export_sparse, load_sparse, sparse_inference
from .interspace import basis_parameters, fold, is_interspace, to_interspace
from .masks import (
    Mask,
    PrunableTensor,
    SparsityReport,
    apply_masks,
    keep_masked,
    prunable,
    sparsity_report,
)
from .pruning import (
    LayerCollapseWarning,
    ScoringContext,
    allocate,
    method_names,
    prune,
    register_method,
)

__version__ = "0.1.0"

__all__ = [
    "FilterBasis",
    "LayerCollapseWarning",
    "Mask",
    "PrunableTensor",
    "ScoringContext",
    "SparsityReport",
    "allocate",
    "apply_masks",
    "basis_names",
    "basis_parameters",
    "bases",
    "costs",
    "export_onnx",
    "export_sparse",
    "inference",
    "load_sparse",
    "sparse_inference",
    "filter_bases",
    "fold",
    "is_interspace",
    "keep_masked",
    "method_names",
    "models",
    "prunable",
    "prune",
    "pruning",
    "register_method",
    "sparsity_report",
    "to_interspace",
]
