"""Interspace pruning (IP) and standard unstructured pruning (SP) for CNNs.

Prepare a model in a representation, then prune it once or let a pruner change its masks
from your own training loop::

    import interspace_pruning as ip

    model = ip.models.get("resnet20", num_classes=10)   # or any CNN of your own
    ip.prepare(model, "ip")                             # "sp" for standard pruning
    ip.prune(model, "snip", 0.95, data=batches)         # one-shot: batches of (x, y) ...
    pruner = ip.pruner("rigl", model, optimizer, sparsity=0.9, total_steps=T)
    ...                                                 # ... or: optimizer.step(); pruner.step()
    print(ip.sparsity_report(model))
    ip.log_sparsity(writer, model, step)                # to TensorBoard, W&B, MLflow, ...
    plain = ip.fold(model)                              # plain torch model for deployment
"""

from . import bases, inference, models, pruning, schedules, tracking
from .bases import FilterBasis, basis_names, filter_bases
from .inference import costs, export_onnx, export_sparse, load_sparse, sparse_inference
from .interspace import (
    Representation,
    basis_parameters,
    fold,
    is_interspace,
    prepare,
    to_interspace,
)
from .masks import (
    Mask,
    PrunableTensor,
    SparsityReport,
    apply_masks,
    keep_masked,
    no_gradient_capture,
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
from .schedules import (
    Pruner,
    lottery_ticket,
    pruner,
    pruner_names,
    register_schedule,
    schedule_names,
)
from .tracking import log_sparsity

__version__ = "0.1.0"

__all__ = [
    "FilterBasis",
    "LayerCollapseWarning",
    "Mask",
    "PrunableTensor",
    "Pruner",
    "Representation",
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
    "filter_bases",
    "fold",
    "inference",
    "tracking",
    "is_interspace",
    "keep_masked",
    "load_sparse",
    "log_sparsity",
    "lottery_ticket",
    "method_names",
    "models",
    "no_gradient_capture",
    "prepare",
    "prunable",
    "prune",
    "pruner",
    "pruner_names",
    "pruning",
    "register_method",
    "register_schedule",
    "schedule_names",
    "schedules",
    "sparse_inference",
    "sparsity_report",
    "to_interspace",
]
