"""N:M (e.g. 2:4) sparsity: the mask rule, allocation, every criterion, and every schedule."""

import math
import warnings

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning import data
from interspace_pruning.experiments.config import ModelConfig, PruneConfig, RunConfig
from interspace_pruning.experiments.run import run
from interspace_pruning.pruning import LayerCollapseWarning, allocate, method_names
from interspace_pruning.pruning.allocation import (
    dense_layers,
    nm_mask,
    parse_pattern,
    pattern_min_sparsity,
    project_to_pattern,
    satisfies_pattern,
)
from interspace_pruning.training import Callback, TrainConfig


def reference_nm(scores: torch.Tensor, n: int, m: int, taken=None) -> torch.Tensor:
    """Plain-Python N:M selection, group by group, to check the vectorised one against."""
    rows = scores.reshape(scores.shape[0], -1)
    taken_rows = None if taken is None else taken.reshape(rows.shape)
    out = torch.zeros_like(rows, dtype=torch.bool)
    for r in range(rows.shape[0]):
        for start in range(0, rows.shape[1], m):
            cols = list(range(start, min(start + m, rows.shape[1])))
            used = 0 if taken_rows is None else int(taken_rows[r, cols].sum())
            free = [c for c in cols if taken_rows is None or not taken_rows[r, c]]
            free = [c for c in free if rows[r, c] > -math.inf]
            free.sort(key=lambda c: (-float(rows[r, c]), c))
            for c in free[: max(n - used, 0)]:
                out[r, c] = True
    return out.reshape(scores.shape)


SHAPES = [(6, 3, 3, 3), (5, 4, 9), (7, 12), (4, 1, 3, 3), (3, 2, 5, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (3, 8)])
def test_nm_mask_matches_a_plain_reference(shape, nm):
    g = torch.Generator().manual_seed(sum(shape))
    scores = torch.randn(shape, generator=g)
    scores[scores < -1.2] = -math.inf  # dead entries are never chosen
    mask = nm_mask(scores, *nm)
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    assert torch.equal(mask, reference_nm(scores, *nm))
    assert satisfies_pattern(mask, *nm)
    taken = (torch.rand(shape, generator=g) < 0.2) & nm_mask(torch.rand(shape, generator=g), *nm)
    room = nm_mask(scores, *nm, taken=taken)
    assert torch.equal(room, reference_nm(scores, *nm, taken=taken))
    assert not (room & taken).any() and satisfies_pattern(room | taken, *nm)


def test_groups_run_along_the_input_dimension():
    # (Cout=1, Cin=2, K=2x2): row-major Cin*K*K = 8 entries, groups [0:4] and [4:8]
    scores = torch.tensor([[[[9.0, 8.0], [7.0, 6.0]], [[1.0, 2.0], [3.0, 4.0]]]])
    assert nm_mask(scores, 2, 4).flatten().tolist() == [1, 1, 0, 0, 0, 0, 1, 1]
    # each output row is grouped on its own: a row never borrows another row's budget
    rows = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert nm_mask(rows, 2, 4).tolist() == [[False, True, True], [False, True, True]]
    assert not satisfies_pattern(torch.ones(1, 4, dtype=torch.bool), 2, 4)
    full = torch.ones(3, 4, dtype=torch.bool)
    assert satisfies_pattern(project_to_pattern(full, torch.rand(3, 4), 2, 4), 2, 4)


def test_parse_pattern():
    assert parse_pattern("2:4") == (2, 4) and parse_pattern((1, 8)) == (1, 8)
    assert parse_pattern(None) is None
    for bad in ["4:4", "0:4", "2-4", "a:b", "5:4"]:
        with pytest.raises(ValueError, match="N:M"):
            parse_pattern(bad)
    with pytest.raises(ValueError, match="N:M"):
        PruneConfig(pattern="2/4")


@pytest.fixture(scope="module", params=["sp", "ip"])
def resnet(request):
    torch.manual_seed(0)
    model = ip.models.get("resnet20")
    if request.param == "ip":
        ip.to_interspace(model)
    return model


@pytest.mark.parametrize("allocation", ["global", "uniform", "erk"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_allocation_keeps_the_pattern_and_the_exact_count(allocation, sparsity, resnet):
    entries = ip.prunable(resnet)
    g = torch.Generator().manual_seed(3)
    scores = [torch.rand(e.param.shape, generator=g) for e in entries]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayerCollapseWarning)
        masks = allocate(scores, entries, sparsity, allocation, pattern="2:4")
    total = sum(e.numel() for e in entries)
    assert sum(int(m.sum()) for m in masks) == round((1 - sparsity) * total)
    assert all(satisfies_pattern(m, 2, 4) for m in masks)
    # the kept entries are, per group, among its two best
    for s, m in zip(scores, masks, strict=True):
        assert not (m & ~nm_mask(s, 2, 4)).any()


def test_dense_layers_are_exempt(resnet):
    entries = ip.prunable(resnet)
    dense = dense_layers(entries, keep_first_dense=True, keep_last_dense=True)
    scores = [torch.rand(e.param.shape) for e in entries]
    masks = allocate(scores, entries, 0.6, "global", dense, pattern="2:4")
    for i, m in enumerate(masks):
        assert bool(m.all()) if i in dense else satisfies_pattern(m, 2, 4)


def test_a_sparsity_below_the_pattern_is_refused(resnet):
    entries = ip.prunable(resnet)
    lowest = pattern_min_sparsity(entries, "2:4")
    assert 0.49 < lowest <= 0.5  # the first conv's 27-entry rows end in a group of 3
    scores = [torch.rand(e.param.shape) for e in entries]
    with pytest.raises(ValueError, match="pattern 2:4"):
        allocate(scores, entries, 0.3, "global", pattern="2:4")
    with pytest.raises(ValueError, match="pattern 2:4"):
        ip.prune(ip.models.get("resnet20"), "magnitude", 0.4, pattern="2:4")


def tiny_batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))]


@pytest.mark.parametrize("method", method_names())
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_every_criterion_respects_the_pattern(method, representation):
    torch.manual_seed(0)
    model = ip.models.get("convnet", 10, 1, width=8)
    if representation == "ip":
        ip.to_interspace(model)
    report = ip.prune(
        model, method, 0.7, data=tiny_batches(), input_shape=(1, 8, 8), pattern="2:4", rounds=3
    )
    total = report.total
    assert report.nonzero == round(0.3 * total)
    assert all(satisfies_pattern(e.mask, 2, 4) for e in ip.prunable(model))


class PatternCheck(Callback):
    """After every optimiser step: the model is still dense (GMP before its start, IMP's
    first training) or every layer keeps the pattern, and once pruned it stays so."""

    def __init__(self, n, m):
        self.nm, self.ok, self.masks, self.pruned = (n, m), [], [], False

    def on_step_end(self, state):
        masks = [e.mask.bool().clone() for e in ip.prunable(state.model)]
        dense = all(bool(m.all()) for m in masks)
        self.pruned |= not dense
        keeps = all(satisfies_pattern(m, *self.nm) for m in masks)
        self.ok.append(keeps or (dense and not self.pruned))
        self.masks.append(masks)


@pytest.fixture(scope="module")
def digits():
    return data.get("digits", train_subset=192, test_subset=40)


@pytest.mark.parametrize(
    "representation,method",
    [("sp", "gmp"), ("ip", "gmp"), ("sp", "rigl"), ("ip", "rigl"), ("ip", "set"), ("sp", "imp")],
)
def test_pattern_holds_through_training(method, representation, digits):
    cfg = RunConfig(
        model=ModelConfig(model="convnet"),
        prune=PruneConfig(
            representation=representation, method=method, sparsity=0.75, pattern="2:4"
        ),
        train=TrainConfig(epochs=2, batch_size=16),
    )
    cfg = cfg.with_options("gmp", interval=4).with_options("dst", interval=4)
    cfg = cfg.with_options("imp", rounds=1)
    check = PatternCheck(2, 4)
    result = run(cfg, dataset=digits, callbacks=[check], progress=False)
    assert len(check.ok) >= 24 and all(check.ok) and check.pruned
    entries = ip.prunable(result.model)
    assert all(satisfies_pattern(e.mask, 2, 4) for e in entries)
    assert all(bool((e.param[e.mask == 0] == 0).all()) for e in entries)
    total = sum(e.numel() for e in entries)
    assert sum(e.num_kept() for e in entries) == round(0.25 * total)
    if method == "rigl":  # the masks really moved while keeping the pattern
        first, last = check.masks[0], check.masks[-1]
        assert any(not torch.equal(a, b) for a, b in zip(first, last, strict=True))
