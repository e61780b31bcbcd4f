"""Which runs' checkpoints the campaign can commit: a ResNet-20's always, an ImageNet
ResNet-18's only when it is sparse from its first step at 98% (stored compactly)."""

from __future__ import annotations

import pytest

from interspace_pruning.campaign.gitsync import (
    MAX_GIT_FILE,
    checkpoint_bytes,
    checkpoint_goes_through_git,
)
from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.experiments.config import DataConfig, ModelConfig


def _cfg(model, dataset, rep, method, sparsity):
    return RunConfig(
        data=DataConfig(dataset=dataset),
        model=ModelConfig(model=model),
        prune=PruneConfig(representation=rep, method=method, sparsity=sparsity),
    )


@pytest.mark.parametrize(
    "rep, method, sparsity, commits",
    [
        ("ip", "snip", 0.98, True),
        ("sp", "rigl", 0.98, True),
        ("sp", "set", 0.98, True),
        ("ip", "gmp", 0.95, False),  # dense until its ramp ends
        ("sp", "snip", 0.95, False),  # 7 MB compact
        ("dense", "snip", 0.98, False),
    ],
)
def test_imagenet_resnet18(rep, method, sparsity, commits):
    cfg = _cfg("resnet18", "imagewoof", rep, method, sparsity)
    assert checkpoint_goes_through_git(cfg) is commits
    if commits:  # measured: 3.4-3.6 MB (benchmarks/checkpoint_size.py)
        assert 3.3e6 < checkpoint_bytes(cfg) <= MAX_GIT_FILE


@pytest.mark.parametrize("rep, method", [("dense", "snip"), ("ip", "gmp"), ("sp", "imp")])
def test_a_resnet20_checkpoint_always_commits(rep, method):
    assert checkpoint_goes_through_git(_cfg("resnet20", "cifar10", rep, method, 0.9))
