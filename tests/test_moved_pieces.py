"""What moved between layers is still reachable under its old names, as the same objects,
and the new seams work: the sparse-module table of ``inference`` and the dataset shapes of
``data``."""

from __future__ import annotations

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning import callbacks, data, training
from interspace_pruning.foundations import distributed as fdist
from interspace_pruning.inference import engine
from interspace_pruning.masks import MaskedParametrization, MaskedWeight, prunable
from interspace_pruning.schedules import Pruner
from interspace_pruning.training import checkpointing, loop, signals

from .conftest import MixedNet, prune_randomly


def test_old_names_are_the_same_objects():
    import interspace_pruning.training.distributed as tdist

    assert training.distributed is fdist and tdist is fdist
    assert training.Callback is callbacks.Callback and training.TrainState is callbacks.TrainState
    assert issubclass(Pruner, callbacks.Callback)
    assert loop.CHECKPOINT == checkpointing.CHECKPOINT == "checkpoint.pt"
    assert loop.StopOnSignals is signals.StopOnSignals
    assert loop.TrainingStopped is training.TrainingStopped is signals.TrainingStopped
    assert training.reset_state_entries.__module__ == "interspace_pruning.foundations.optim_state"


def test_placement_resolves_once_from_the_config():
    cfg = training.TrainConfig(device="cpu", precision="fp32", channels_last="auto")
    where = training.device.Placement.of(cfg)
    assert where == training.device.Placement(torch.device("cpu"), "fp32", True)  # NHWC on CPUs


def test_masks_do_not_know_the_sparse_modules():
    assert not hasattr(MaskedParametrization, "sparse_module")
    assert engine.SPARSE_CONVS[MaskedWeight] is engine.SparseSPConv2d
    assert engine.SPARSE_CONVS[ip.interspace.InterspaceWeight] is engine.SparseIPConv2d


class _MyWeight(MaskedWeight):
    """A subclass: served by its nearest registered base class."""


class _Unknown(MaskedParametrization):  # nobody registered it
    kind = "x"

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__(like.shape, like)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def test_sparse_module_table_dispatches_by_type(monkeypatch):
    torch.manual_seed(0)
    model = prune_randomly(MixedNet(), "sp", 0.8, 0)
    stem = prunable(model)[0]
    stem.parametrization.__class__ = _MyWeight
    out = engine.sparse_inference(model, mode="sparse", backend="torch")
    assert isinstance(out.stem, engine.SparseSPConv2d)
    stem.parametrization.__class__ = _Unknown
    with pytest.raises(NotImplementedError, match="register_sparse_conv"):
        engine.sparse_inference(model, mode="sparse", backend="torch")
    monkeypatch.setitem(engine.SPARSE_CONVS, _Unknown, engine.SparseSPConv2d)
    out = engine.sparse_inference(model, mode="sparse", backend="torch")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(out(x), model(x), atol=1e-4)


def test_one_table_of_dataset_shapes():
    assert tuple(data.SHAPES) == data.NAMES and data.names() == list(data.SHAPES)
    ds = data.get("digits")
    s = data.SHAPES["digits"]
    assert (ds.num_classes, ds.in_channels) == (s.num_classes, s.channels)
    assert data.image_shape("digits") == ds.image_shape == (1, 8, 8)
    assert data.image_shape("digits", image_size=99) == (1, 8, 8)  # fixed-size data
    assert data.image_shape("tiny-imagenet") == (3, 64, 64)
    assert data.image_shape("imagefolder", 160, channels=1) == (1, 160, 160)
