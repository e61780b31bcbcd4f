import math

import pytest
import torch
import torch.nn.functional as F

import interspace_pruning as ip
from interspace_pruning.masks import dense_gradients
from interspace_pruning.schedules import SET, DynamicSparseTraining, RigL
from interspace_pruning.training import TrainConfig, train

from .conftest import MaskRecorder, small_model


@pytest.mark.parametrize("growth", ["gradient", "random"])
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_constant_sparsity_and_no_resurrection_between_updates(growth, representation, digits):
    model = small_model(representation)
    ip.prune(model, "random", 0.9, allocation="erk")
    per_layer = [e.num_kept() for e in ip.prunable(model)]
    dst = DynamicSparseTraining(growth=growth, interval=5, drop_fraction=0.3)
    rec = MaskRecorder()
    train(model, digits, TrainConfig(epochs=4, batch_size=32), callbacks=[dst, rec], progress=False)
    updates = {s for s, _, _ in dst.events}
    assert updates == {s for s in range(5, 24, 5)}  # 32 steps, stop at 75%
    assert all(changed > 0 for _, _, changed in dst.events)
    for t, masks in enumerate(rec.masks):
        assert [int(m.sum()) for m in masks] == per_layer  # exactly constant, every layer
        if t > 0 and t not in updates:
            assert all(bool((a == b).all()) for a, b in zip(rec.masks[t - 1], masks, strict=True))
    assert all(rec.stored_zero)


def test_drop_fraction_is_cosine_annealed():
    dst = RigL(drop_fraction=0.3, stop_fraction=0.75)
    assert dst.drop_fraction_at(0, 1000) == pytest.approx(0.3)
    assert dst.drop_fraction_at(375, 1000) == pytest.approx(0.15)
    assert dst.drop_fraction_at(750, 1000) == 0.0 and not dst.is_update(800, 1000)
    assert dst.is_update(700, 1000) and not dst.is_update(0, 1000)
    assert SET().growth == "random"
    with pytest.raises(ValueError, match="unknown growth"):
        DynamicSparseTraining(growth="momentum")


def _explicit_dense_grad(model, entry, x, y):
    """dL/d(effective prunable tensor), computed without the library's machinery."""
    module = entry.module
    if entry.kind == "ip":
        fb = module.parametrizations.weight[0].basis
        lam = (entry.param.detach() * entry.mask).clone().requires_grad_(True)
        w = (lam @ fb().detach()).reshape(module.weight.shape)
    else:
        lam = (entry.param.detach() * entry.mask).clone().requires_grad_(True)
        w = lam
    handle = module.register_forward_hook(
        lambda m, inp, out: (
            F.conv2d(inp[0], w, m.bias, m.stride, m.padding, m.dilation, m.groups)
            if isinstance(m, torch.nn.Conv2d)
            else F.linear(inp[0], w, m.bias)
        )
    )
    loss = F.cross_entropy(model(x), y)
    handle.remove()
    return torch.autograd.grad(loss, lam)[0]


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_dense_gradients_include_pruned_entries(representation, digits):
    model = small_model(representation)
    ip.prune(model, "random", 0.8)
    x, y = next(digits.train_batches(32, torch.Generator().manual_seed(0)))
    entries = ip.prunable(model)
    grads = dense_gradients(model, entries, x, y, F.cross_entropy)
    for e, g in zip(entries, grads, strict=True):
        expected = _explicit_dense_grad(model, e, x, y)
        assert torch.allclose(g, expected, atol=1e-6, rtol=1e-4)
        assert float(g[e.mask == 0].abs().sum()) > 0  # pruned entries do get a gradient


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_rigl_regrows_the_top_gradient_entries(representation, digits):
    """The pruner reads the gradient of the user's own backward pass (no extra call) and
    the magnitudes from just before ``optimizer.step()``."""
    model = small_model(representation)
    model.eval()  # BN in eval: the test's own gradient equals the pruner's exactly
    ip.prune(model, "random", 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = next(digits.train_batches(32, torch.Generator().manual_seed(1)))
    entries = ip.prunable(model)
    before = [e.mask.bool().clone() for e in entries]
    magnitudes = [e.param.detach().abs().clone() for e in entries]
    grads = [_explicit_dense_grad(model, e, x, y).abs() for e in entries]
    rigl = RigL(interval=1, drop_fraction=0.5, stop_fraction=1.0).bind(model, opt, 10)
    rigl.step_count = 1  # step 1 is an update step (step 0 never is)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    rigl.step()
    alpha = rigl.drop_fraction_at(1, 10)
    for e, old, mag, g in zip(entries, before, magnitudes, grads, strict=True):
        k = math.floor(alpha * int(old.sum()))
        if k == 0:
            continue
        # drop: the k smallest magnitudes among the active entries
        m = mag.flatten().clone()
        m[~old.flatten()] = math.inf
        dropped = set(torch.topk(m, k, largest=False).indices.tolist())
        after_drop = old.flatten().clone()
        after_drop[list(dropped)] = False
        # grow: the k largest |gradient| among the inactive entries
        s = g.flatten().clone()
        s[after_drop] = -math.inf
        grown = set(torch.topk(s, k).indices.tolist())
        expected = after_drop.clone()
        expected[list(grown)] = True
        assert torch.equal(e.mask.bool().flatten(), expected), e.name
        assert all(float(e.param.detach().flatten()[i]) == 0.0 for i in grown)
        assert int(e.mask.sum()) == int(old.sum())
        momentum = opt.state[e.param]["momentum_buffer"].flatten()
        assert all(float(momentum[i]) == 0.0 for i in grown)  # no history either
