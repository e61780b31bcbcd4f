"""Criteria against independent computations on a two-layer network, SP and IP."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import interspace_pruning as ip
from interspace_pruning.pruning import ScoringContext, get_method
from interspace_pruning.pruning.methods.grasp import TEMPERATURE


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3, bias=False)
    ).double()


def _batches():
    g = torch.Generator().manual_seed(7)
    return [
        (
            torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (4,), generator=g),
        )
        for _ in range(2)
    ]


def _setup(representation: str):
    model = _net()
    if representation == "ip":
        ip.to_interspace(model, basis="random")
        with torch.no_grad():  # a non-orthonormal, non-unit basis exercises normalisation
            ip.filter_bases(model)[0].weight.mul_(
                torch.linspace(0.5, 2.0, 9, dtype=torch.float64)[:, None]
            )
    entries = ip.prunable(model)
    return model, entries


def _conv_weight(model, theta_conv):
    """The spatial conv weight from the raw prunable tensor, written out explicitly."""
    conv = model[0]
    if ip.is_interspace(conv):
        fb = conv.parametrizations.weight[0].basis.weight
        fn = fb / fb.norm(dim=1, keepdim=True)
        return (theta_conv @ fn).reshape(2, 1, 3, 3)
    return theta_conv


def _loss(model, thetas, batches, temperature=1.0):
    total = 0.0
    for x, y in batches:
        h = F.relu(F.conv2d(x, _conv_weight(model, thetas[0])))
        out = F.linear(h.flatten(1), thetas[1]) / temperature
        total = total + F.cross_entropy(out, y)
    return total


def _fd_grad(fn, thetas, eps=1e-6):
    grads = []
    for i, t in enumerate(thetas):
        g = torch.zeros_like(t)
        for idx in range(t.numel()):
            plus = [x.clone() for x in thetas]
            minus = [x.clone() for x in thetas]
            plus[i].view(-1)[idx] += eps
            minus[i].view(-1)[idx] -= eps
            g.view(-1)[idx] = (fn(plus) - fn(minus)) / (2 * eps)
        grads.append(g)
    return grads


def _scores(name, model, entries, data, input_shape=None):
    ctx = ScoringContext(model, entries, data, F.cross_entropy, input_shape)
    return get_method(name).score(ctx)


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_snip_matches_finite_differences(representation):
    model, entries = _setup(representation)
    batches = _batches()
    thetas = [e.param.detach().clone() for e in entries]
    with torch.no_grad():
        grads = _fd_grad(lambda th: _loss(model, th, batches), thetas)
    expected = [(g * t).abs() for g, t in zip(grads, thetas, strict=True)]
    got = _scores("snip", model, entries, batches)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-9)
    # both batches count: the score differs from the first batch alone
    one = _scores("snip", model, entries, batches[:1])
    assert not torch.allclose(one[1], got[1])


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_grasp_matches_a_finite_difference_hessian_vector_product(representation):
    model, entries = _setup(representation)
    batches = _batches()
    thetas = [e.param.detach().clone().requires_grad_(True) for e in entries]

    def grad_at(th):
        th = [t.detach().requires_grad_(True) for t in th]
        return torch.autograd.grad(_loss(model, th, batches, TEMPERATURE), th)

    g = grad_at(thetas)
    eps = 1e-4
    plus = grad_at([t + eps * d for t, d in zip(thetas, g, strict=True)])
    minus = grad_at([t - eps * d for t, d in zip(thetas, g, strict=True)])
    hg = [(p - m) / (2 * eps) for p, m in zip(plus, minus, strict=True)]
    expected = [h * t.detach() for h, t in zip(hg, thetas, strict=True)]
    got = _scores("grasp", model, entries, batches)
    scale = max(float(e.abs().max()) for e in expected)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * scale)


def test_synflow_matches_the_closed_form_sp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    w1, w2 = model[0].weight.detach().clone(), model[2].weight.detach().clone()
    b1 = model[0].bias.detach().clone()
    entries = ip.prunable(model)
    got = _scores("synflow", model, entries, None, input_shape=(5,))
    # R = 1^T |W2| (|W1| 1 + |b1|) + ...: dR/dW1_ij = sum_o |W2|_oi, dR/dW2_oi = (|W1| 1 + |b1|)_i
    col = w2.abs().sum(0)
    h = w1.abs().sum(1) + b1.abs()
    assert torch.allclose(got[0].float(), w1.abs() * col[:, None], rtol=1e-6)
    assert torch.allclose(got[1].float(), w2.abs() * h[None, :], rtol=1e-6)


def test_synflow_matches_the_closed_form_ip():
    model, entries = _setup("ip")
    lam = entries[0].param.detach().clone()  # (2, 1, 9)
    w2 = entries[1].param.detach().clone()  # (3, 18)
    fb = ip.filter_bases(model)[0].weight.detach().abs()
    fn = fb / fb.norm(dim=1, keepdim=True)
    got = _scores("synflow", model, entries, None, input_shape=(1, 5, 5))
    # all-ones 5x5 input, positive 3x3 filters: every output pixel of channel c equals
    # sum_t W[c, t]; R = sum_c s_c sum_t W[c, t] with s_c the |W2| mass on channel c's pixels
    s = w2.abs().sum(0).reshape(2, 9).sum(1)
    d_lam = s[:, None, None] * fn.sum(1)[None, None, :]
    assert torch.allclose(got[0], lam.abs() * d_lam, rtol=1e-5)
    w_conv = (lam.abs() @ fn).reshape(2, 9).sum(1)  # per-channel filter sums
    h = w_conv.repeat_interleave(9)
    assert torch.allclose(got[1], w2.abs() * h[None, :], rtol=1e-5)


def test_magnitude_and_random():
    model, entries = _setup("ip")
    mag = _scores("magnitude", model, entries, None)
    assert torch.equal(mag[0], entries[0].param.detach().abs())
    torch.manual_seed(0)
    r1 = _scores("random", model, entries, None)
    torch.manual_seed(0)
    r2 = _scores("random", model, entries, None)
    assert torch.equal(r1[0], r2[0]) and float(r1[0].std()) > 0
