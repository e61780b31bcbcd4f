"""Queries that evaluate a model (``costs``, ``evaluate``, ``build_engines``) put every module
back in its own train/eval mode afterwards, also when they raise."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning import data
from interspace_pruning.foundations.modes import eval_mode
from interspace_pruning.inference.bench import build_engines
from interspace_pruning.training import evaluate


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = ip.models.get("convnet", 10, 1, width=4)
    ip.to_interspace(model)
    ip.prune(model, "random", 0.8)
    model.train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bn.eval()  # a frozen BatchNorm inside a training model must stay frozen
    return model


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_eval_mode_restores_each_module_also_on_error():
    model = _model()
    before = _modes(model)
    assert True in before and False in before
    with eval_mode(model) as m:
        assert m is model and not any(_modes(model))
    assert _modes(model) == before
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert _modes(model) == before


def test_costs_restores_modes():
    model = _model()
    before = _modes(model)
    report = ip.costs(model, (1, 8, 8))
    assert report.dense_flops > 0 and report.layers
    assert _modes(model) == before
    with pytest.raises(RuntimeError):  # three channels into a one-channel stem
        ip.costs(model, (3, 8, 8))
    assert _modes(model) == before


def test_evaluate_restores_modes():
    ds = data.get("digits", train_subset=50, test_subset=30)
    model = _model()
    before = _modes(model)
    out = evaluate(model, ds, batch_size=16)
    assert 0.0 <= out["test_acc"] <= 1.0
    assert _modes(model) == before
    broken = nn.Sequential(nn.Flatten(), _Boom()).train()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(broken, ds, batch_size=16)
    assert all(_modes(broken))


def test_build_engines_restores_modes_and_engines_are_eval(monkeypatch):
    model = _model()
    before = _modes(model)
    x = torch.randn(2, 1, 8, 8)
    fns, _ = build_engines(model, x, ("torch", "sparse"))
    assert _modes(model) == before
    with eval_mode(model), torch.no_grad():
        want = model(x)
    for fn in fns.values():  # built from the eval-mode model: the same function
        assert not fn.training
        with torch.no_grad():
            assert torch.allclose(fn(x), want, atol=1e-5)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails inside the build
    with pytest.raises(ValueError, match="pip install"):
        build_engines(model, x, ("onnxruntime",))
    assert _modes(model) == before
