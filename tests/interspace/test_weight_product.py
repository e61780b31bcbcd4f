"""The IP weight product ``(Lambda * M) F``: the paired GEMM equals the plain product."""

import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.interspace import parametrization as P


def _product_and_grads(product, coeffs, basis, grad):
    c = coeffs.clone().requires_grad_()
    f = basis.clone().requires_grad_()
    out = product(c, f)
    out.backward(grad)
    return out.detach(), c.grad, f.grad


@pytest.mark.parametrize(
    "shape",
    [(64, 64), (64, 32), (256, 9)],  # 4096, 2048 and 2304 filters: the paired GEMM
    ids=["64x64", "64x32", "256x9"],
)
def test_paired_product_and_its_gradients_equal_the_plain_product(shape):
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(*shape, 9, generator=g, dtype=torch.float64)
    basis = torch.randn(9, 9, generator=g, dtype=torch.float64)
    grad = torch.randn(*shape, 9, generator=g, dtype=torch.float64)
    assert shape[0] * shape[1] >= P._PAIR_MIN_FILTERS
    paired = _product_and_grads(P._basis_product, coeffs, basis, grad)
    plain = _product_and_grads(P._matmul_no_autocast, coeffs, basis, grad)
    for a, b in zip(paired, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(16, 16), (683, 3)], ids=["small", "odd-filters"])
def test_small_layers_and_odd_filter_counts_take_the_plain_product(shape, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "block_diag", lambda *a: calls.append(a) or None)
    coeffs, basis = torch.randn(*shape, 9), torch.randn(9, 9)
    assert torch.equal(P._basis_product(coeffs, basis), coeffs @ basis)
    assert not calls


def test_the_standard_basis_returns_the_coefficients_exactly():
    """With the standard basis IP is SP, also on the paired path: the zero blocks add
    nothing, so the weight is the coefficients bit for bit."""
    coeffs = torch.randn(128, 64, 9)
    coeffs[0, 0, 0] = -0.0
    w = P._basis_product(coeffs, torch.eye(9))
    assert torch.equal(w, coeffs)


def test_a_non_square_basis_is_paired_correctly():
    coeffs, basis = torch.randn(64, 64, 4), torch.randn(4, 9)
    w = P._basis_product(coeffs, basis)
    assert w.shape == (64, 64, 9)
    torch.testing.assert_close(w, coeffs @ basis)


def test_the_weight_is_formed_in_float32_under_bf16_autocast():
    conv = nn.Conv2d(64, 64, 3, bias=False)
    ip.to_interspace(nn.Sequential(conv))
    coeffs = conv.parametrizations["weight"].original
    param = conv.parametrizations["weight"][0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = conv.weight
    assert w.dtype == torch.float32
    expected = (coeffs * param.mask) @ param.basis()
    torch.testing.assert_close(w, expected.view(64, 64, 3, 3), rtol=1e-6, atol=1e-6)
