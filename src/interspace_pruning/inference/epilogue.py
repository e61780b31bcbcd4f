"""Fusing the work after a sparse convolution into the kernel's epilogue, for inference.

A sparse convolution on the native kernel can add a residual tensor and apply ReLU while its
output tile is still in registers, instead of two more passes over memory. This rewrites the
model's ``torch.fx`` graph: ``relu(conv(x) + r)`` becomes ``conv(x, r)`` with the ReLU fused,
``relu(conv(x))`` becomes ``conv(x)`` with the ReLU fused, and a 2x2 max-pool after that is
fused too: the kernel then writes only the pooled output (where its pixel tiles hold whole
pairs of output rows; elsewhere the module pools with torch). A pattern is fused only when each
intermediate result has a single consumer and the convolution is called once. A model that
``torch.fx`` cannot trace is left as it is.
"""

from __future__ import annotations

import functools
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from .fusion import _Tracer

_ADDS = (operator.add, torch.add)
_RELUS = (torch.relu, F.relu, torch.relu_)


def _sole_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """``node`` is a plain ReLU of one tensor (in place or not: its input has no other user)."""
    if node.op == "call_function" and node.target in _RELUS:
        return len(node.args) == 1 and set(node.kwargs) <= {"inplace"}
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return len(node.args) == 1 and not node.kwargs
    return node.op == "call_module" and type(modules.get(node.target)) is nn.ReLU


def _fusable(module: nn.Module | None) -> bool:
    """Takes ``forward(x, residual=None)``, has the epilogue flags and runs on the kernel."""
    return hasattr(module, "fuse_relu") and bool(getattr(module, "kernel", False))


def _is_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """``node`` is a 2x2 max-pool with stride 2 and nothing else (the kernel's fused pool)."""
    m = modules.get(node.target) if node.op == "call_module" else None
    if type(m) is not nn.MaxPool2d or len(node.args) != 1 or node.kwargs:
        return False
    two = (2, (2, 2))
    return (
        m.kernel_size in two
        and m.stride in two
        and m.padding in (0, (0, 0))
        and m.dilation in (1, (1, 1))
        and not m.ceil_mode
        and not m.return_indices
    )


def fuse_epilogues(
    model: nn.Module, leaves: tuple[type, ...], pool: bool = True
) -> tuple[nn.Module, list[str]]:
    """Fold residual additions, ReLUs and (with ``pool``) 2x2 max-pools that follow sparse
    convolutions on the native kernel into them (setting their ``fuse_residual`` /
    ``fuse_relu`` / ``fuse_pool`` flags); modules of the types
    in ``leaves`` are not traced into. Returns the rewritten model (an ``fx.GraphModule``;
    ``model`` itself when nothing was fused) and the names of the modules that took over."""
    try:
        graph = _Tracer(leaves).trace(model)
    except Exception:  # dynamic control flow etc.: nothing is fused
        return model, []
    modules = dict(model.named_modules())
    for node in list(graph.nodes):  # e.g. the folded BatchNorms: out of the way
        identity = node.op == "call_module" and type(modules.get(node.target)) is nn.Identity
        if identity and len(node.args) == 1 and isinstance(node.args[0], fx.Node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    fused = []
    for node in list(graph.nodes):
        if node.op != "call_module" or not _fusable(modules.get(node.target)):
            continue
        module = modules[node.target]
        if calls[node.target] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        took = False
        user = _sole_user(node)
        if (
            user is not None
            and user.op == "call_function"
            and user.target in _ADDS
            and len(user.args) == 2
            and not user.kwargs
            and all(isinstance(a, fx.Node) for a in user.args)
            and user.args[0] is not user.args[1]
        ):
            other = user.args[1] if user.args[0] is node else user.args[0]
            user.prepend(node)  # after the other operand, which the call now reads
            node.args = (node.args[0], other)
            user.replace_all_uses_with(node)
            graph.erase_node(user)
            module.fuse_residual = took = True
        user = _sole_user(node)
        if user is not None and _is_relu(user, modules):
            user.replace_all_uses_with(node)
            graph.erase_node(user)
            module.fuse_relu = took = True
        user = _sole_user(node)
        if pool and not module.fuse_residual and user is not None and _is_pool(user, modules):
            user.replace_all_uses_with(node)
            graph.erase_node(user)
            module.fuse_pool = took = True
        if took:
            fused.append(node.target)
    if not fused:
        return model, []
    graph.lint()
    # every submodule stays (the replaced ReLUs and folded BatchNorms too, unused), in its
    # original container, so that names, attributes and indexing (``features[3]``) of the
    # model still resolve: fx would copy the called modules into plain nn.Module containers
    out = fx.GraphModule(model, graph, class_name=type(model).__name__)
    for name, child in model.named_children():
        out.add_module(name, child)
    # a container's own forward would run its fused layers a second way (the ReLU or pool
    # again, a residual missing): calling it is refused, indexing still works
    modules = dict(out.named_modules())
    for target in fused:
        parts = target.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            modules[prefix].forward = functools.partial(_refuse_fused_container, prefix)
    return out, fused


def _refuse_fused_container(name: str, *args, **kwargs):
    raise RuntimeError(
        f"{name} holds layers fused with what follows them (ReLU, pooling, residual "
        "addition), so it cannot run on its own; call the whole engine, or build it with "
        "sparse_inference(..., fuse_epilogue=False)"
    )
