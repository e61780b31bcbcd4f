"""Folding eval-mode BatchNorm into the convolution before it, for inference.

``y = BN(conv(x))`` with running statistics is an affine map per output channel, so it folds
into the convolution: dense weights and bias are rescaled
(``torch.nn.utils.fusion.fuse_conv_bn_eval``), sparse ones have their kept values rescaled row
by row (the sparsity pattern is unchanged), and the BatchNorm becomes ``nn.Identity``. Pairs
are found with ``torch.fx``; a pair is fused only when the BatchNorm is the convolution's sole
consumer. A model that ``torch.fx`` cannot trace is left as it is.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class _Tracer(fx.Tracer):
    """Stops at torch's own modules and at ``leaves`` (e.g. the sparse layers)."""

    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def batchnorm_pairs(model: nn.Module, leaves: tuple[type, ...] = ()) -> list[tuple[str, str]]:
    """``(conv_name, bn_name)`` for every BatchNorm2d fed only by a convolution (dense, or a
    module with ``rescale_outputs``); empty when ``model`` cannot be traced (modules of the
    types in ``leaves`` are not traced into)."""
    try:
        graph = _Tracer(leaves).trace(model)
    except Exception:  # dynamic control flow etc.: nothing is fused
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        (src,) = node.args[:1] or (None,)
        if not isinstance(src, fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        conv = modules[src.target]
        if isinstance(conv, nn.Conv2d) or hasattr(conv, "rescale_outputs"):
            pairs.append((src.target, node.target))
    return pairs


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``name`` inside ``model``."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


@torch.no_grad()
def fuse_batchnorm(model: nn.Module, leaves: tuple[type, ...] = ()) -> list[tuple[str, str]]:
    """Fold every eval-mode BatchNorm2d into the convolution that feeds it, in place.

    Convolutions are ``nn.Conv2d`` or modules with a ``rescale_outputs(scale, shift)`` method;
    modules of the types in ``leaves`` are not traced into. Returns the fused
    ``(conv_name, bn_name)`` pairs.
    """
    pairs = batchnorm_pairs(model, leaves)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if isinstance(conv, nn.Conv2d):
            set_module(model, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        else:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.rescale_outputs(scale, bn.bias - bn.running_mean * scale)
        set_module(model, bn_name, nn.Identity())
    return pairs
