import pytest
import torch
import torch.nn.functional as F
from torch import nn

import interspace_pruning as ip
from interspace_pruning.diagnostics import (
    dense_filter_fraction,
    filter_nnz_histogram,
    gradient_norms,
)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(18, 3, bias=False),
    )


def _explicit(model, x, y):
    """Gradients by hand: W = (Lambda*M) Fn for IP, W = W0*M for SP, autograd on F.conv2d."""
    conv, bn = model[0], model[1]
    lam_e = ip.prunable(model)[0]
    fc_e = ip.prunable(model)[1]
    lam = lam_e.param.detach().clone().requires_grad_(True)
    w_fc = fc_e.param.detach().clone().requires_grad_(True)
    if lam_e.kind == "ip":
        fb = conv.parametrizations.weight[0].basis.weight.detach().clone().requires_grad_(True)
        fn = fb / fb.norm(dim=1, keepdim=True)
        w = ((lam * lam_e.mask) @ fn).reshape(2, 1, 3, 3)
        extra = [fb]
    else:
        w = lam * lam_e.mask
        extra = []
    # the spatial weights as leaves: dL/dW is dense (pruned positions included)
    w_leaf = w.detach().clone().requires_grad_(True)
    fc_leaf = (w_fc * fc_e.mask).detach().clone().requires_grad_(True)
    h = F.batch_norm(F.conv2d(x, w_leaf), None, None, bn.weight, bn.bias, training=True)
    loss = F.cross_entropy(F.linear(F.relu(h).flatten(1), fc_leaf), y)
    g_w, g_fc = torch.autograd.grad(loss, [w_leaf, fc_leaf])
    # chain rule from W to Lambda (and F) by autograd through the explicit W
    g_lam, *g_fb = torch.autograd.grad(w, [lam, *extra], grad_outputs=g_w)
    spatial = torch.sqrt((g_w**2).sum() + (g_fc**2).sum())
    coeff = torch.sqrt((g_lam**2).sum() + ((g_fc * fc_e.mask) ** 2).sum())
    return float(spatial), float(coeff), float(g_fb[0].norm()) if g_fb else 0.0


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_gradient_norms_match_an_explicit_computation(representation):
    model = _net()
    if representation == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", 0.5)
    model.train()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, 1, 5, 5, generator=g), torch.randint(0, 3, (8,), generator=g)
    running = model[1].running_mean.clone()
    got = gradient_norms(model, x, y, F.cross_entropy)
    spatial, coeff, basis = _explicit(model, x, y)
    assert got["spatial_grad_norm"] == pytest.approx(spatial, rel=1e-5)
    assert got["grad_norm"] == pytest.approx(coeff, rel=1e-5)
    assert got["basis_grad_norm"] == pytest.approx(basis, rel=1e-5)
    assert torch.equal(model[1].running_mean, running)  # BN statistics untouched
    assert all(p.grad is None for p in model.parameters())


def test_dense_model_stays_plain():
    model = _net()
    x, y = torch.randn(4, 1, 5, 5), torch.tensor([0, 1, 2, 0])
    out = gradient_norms(model, x, y, F.cross_entropy)
    assert out["grad_norm"] == pytest.approx(out["spatial_grad_norm"])
    assert not ip.masks.has_masks(model)
    assert type(model[0]) is nn.Conv2d


def test_filter_density_counts():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.Conv2d(3, 1, 1, bias=False))
    with torch.no_grad():
        w = torch.zeros(3, 1, 3, 3)
        w[0, 0, 1, 1] = 1.0  # one nonzero
        w[1] = 1.0  # dense
        model[0].weight.copy_(w)  # filter 2 stays all zero
    hist = filter_nnz_histogram(model)
    assert hist == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert dense_filter_fraction(hist) == 0.5


def test_ip_filters_with_one_coefficient_are_dense():
    torch.manual_seed(0)
    model = ip.to_interspace(nn.Sequential(nn.Conv2d(2, 4, 3)))
    ip.prune(model, "magnitude", 1 - 8 / 72)  # about one coefficient per filter
    hist = filter_nnz_histogram(model)
    assert sum(hist[1:9]) == 0 and hist[9] > 0  # alive filters are fully dense in space
    sp = nn.Sequential(nn.Conv2d(2, 4, 3))
    ip.prune(sp, "magnitude", 1 - 8 / 72)
    assert filter_nnz_histogram(sp)[9] == 0
