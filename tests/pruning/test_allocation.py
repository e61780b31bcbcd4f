import math
import warnings

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.pruning import LayerCollapseWarning, allocate, distribute, erk_weights
from interspace_pruning.pruning.allocation import dense_layers

SPARSITIES = [0.5, 0.9, 0.99, 0.999]


@pytest.fixture(scope="module")
def resnet_entries():
    torch.manual_seed(0)
    model = ip.models.get("resnet20")
    return model, ip.prunable(model)


def _random_scores(entries, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(e.param.shape, generator=g) for e in entries]


@pytest.mark.parametrize("allocation", ["global", "uniform", "erk"])
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_exact_sparsity(allocation, sparsity, resnet_entries):
    _, entries = resnet_entries
    total = sum(e.numel() for e in entries)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayerCollapseWarning)
        masks = allocate(_random_scores(entries), entries, sparsity, allocation)
    kept = sum(int(m.sum()) for m in masks)
    assert kept == round((1 - sparsity) * total)
    if allocation == "uniform":  # every layer within one entry of the same density
        for m, e in zip(masks, entries, strict=True):
            assert abs(int(m.sum()) - (1 - sparsity) * e.numel()) <= 1 + 1e-9


@pytest.mark.parametrize("allocation", ["global", "uniform", "erk"])
def test_first_and_last_dense(allocation, resnet_entries):
    _, entries = resnet_entries
    dense = dense_layers(entries, keep_first_dense=True, keep_last_dense=True)
    assert {entries[i].name for i in dense} == {"conv1", "fc"}
    total = sum(e.numel() for e in entries)
    masks = allocate(_random_scores(entries), entries, 0.95, allocation, dense)
    assert bool(masks[0].all()) and bool(masks[-1].all())
    assert sum(int(m.sum()) for m in masks) == round(0.05 * total)
    if allocation == "uniform":
        rest = [
            (m, e) for i, (m, e) in enumerate(zip(masks, entries, strict=True)) if i not in dense
        ]
        densities = {round(float(m.float().mean()), 3) for m, _ in rest}
        assert len(densities) == 1  # the same density for all pruned layers


def test_global_keeps_the_top_scores(resnet_entries):
    _, entries = resnet_entries
    scores = _random_scores(entries, seed=5)
    masks = allocate(scores, entries, 0.9, "global")
    flat_s = torch.cat([s.flatten() for s in scores])
    flat_m = torch.cat([m.flatten() for m in masks])
    assert flat_s[flat_m].min() >= flat_s[~flat_m].max()


def test_erk_densities_follow_the_formula(resnet_entries):
    _, entries = resnet_entries
    masks = allocate(_random_scores(entries), entries, 0.9, "erk")
    dens = [float(m.float().mean()) for m in masks]
    raw = [erk_weights(e.weight_shape) for e in entries]
    scaled = [
        d / r for d, r, e in zip(dens, raw, entries, strict=True) if d < 1 and e.numel() > 500
    ]
    # density / (sum(shape)/prod(shape)) is one constant (up to rounding) for uncapped layers
    assert max(scaled) / min(scaled) < 1.01
    # the smallest layers get the highest density
    assert dens[0] > dens[10]


def test_distribute_is_exact_and_respects_bounds():
    out = distribute([1.0, 1.0, 10.0, 0.0], floors=[0, 2, 0, 5], caps=[3, 10, 100, 5], k=40)
    assert sum(out) == 40 and out[3] == 5 and out[0] == 3 and out[1] >= 2
    with pytest.raises(ValueError, match="feasible range"):
        distribute([1.0], floors=[0], caps=[5], k=6)


def test_layer_collapse_warns_and_min_density_prevents_it(resnet_entries):
    _, entries = resnet_entries
    scores = _random_scores(entries)
    # make the first conv lose every ranking
    scores[0] = scores[0] - 10
    with pytest.warns(LayerCollapseWarning, match="conv1"):
        allocate(scores, entries, 0.99, "global")
    masks = allocate(scores, entries, 0.99, "global", min_density=0.005)
    assert all(
        int(m.sum()) >= math.ceil(0.005 * e.numel()) for m, e in zip(masks, entries, strict=True)
    )
    total = sum(e.numel() for e in entries)
    assert sum(int(m.sum()) for m in masks) == round(0.01 * total)


def test_cannot_reach_targets_raise(resnet_entries):
    torch.manual_seed(0)
    model = ip.models.get("resnet20")
    ip.prune(model, "random", 0.9)
    with pytest.raises(ValueError, match="pruning never revives"):
        ip.prune(model, "magnitude", 0.5)
    entries = ip.prunable(model)
    with pytest.raises(ValueError, match="only .* are still unpruned"):
        allocate(_random_scores(entries), entries, 0.5, "global")
    fresh = ip.prunable(ip.models.get("resnet20"))
    # resnet20's fc (640) and conv1 (432) alone exceed 0.1% of 268336
    dense = dense_layers(fresh, True, True)
    with pytest.raises(ValueError, match="dense layers and min_density alone keep"):
        allocate(_random_scores(fresh), fresh, 0.999, "global", dense)


def test_nan_scores_and_bad_shapes_raise(resnet_entries):
    _, entries = resnet_entries
    scores = _random_scores(entries)
    scores[3][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="contains NaN"):
        allocate(scores, entries, 0.5)
    scores = _random_scores(entries)
    scores[2] = torch.ones(3)
    with pytest.raises(ValueError, match="expected"):
        allocate(scores, entries, 0.5)
