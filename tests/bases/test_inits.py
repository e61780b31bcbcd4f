import math

import numpy as np
import pytest
import torch

from interspace_pruning.bases import FilterBasis, init_basis


def _dct_reference(kh: int, kw: int) -> np.ndarray:
    """2-D DCT-II basis filters from the textbook formula, one loop per index."""
    rows = []
    for u in range(kh):
        for v in range(kw):
            cu = math.sqrt(1 / kh) if u == 0 else math.sqrt(2 / kh)
            cv = math.sqrt(1 / kw) if v == 0 else math.sqrt(2 / kw)
            g = np.zeros((kh, kw))
            for x in range(kh):
                for y in range(kw):
                    g[x, y] = (
                        cu
                        * cv
                        * math.cos(math.pi * (2 * x + 1) * u / (2 * kh))
                        * math.cos(math.pi * (2 * y + 1) * v / (2 * kw))
                    )
            rows.append(g.ravel())
    return np.stack(rows)


@pytest.mark.parametrize("kh,kw", [(3, 3), (5, 5), (1, 3), (3, 2)])
def test_dct_matches_formula_and_is_orthonormal(kh, kw):
    b = init_basis("dct", kh, kw).numpy()
    np.testing.assert_allclose(b, _dct_reference(kh, kw), atol=1e-12)
    np.testing.assert_allclose(b @ b.T, np.eye(kh * kw), atol=1e-12)
    assert np.allclose(b[0], b[0][0])  # DC filter first


def test_standard_is_identity_and_random_is_orthogonal():
    assert torch.equal(init_basis("standard", 3, 3), torch.eye(9, dtype=torch.float64))
    torch.manual_seed(0)
    r = init_basis("random", 3, 3)
    assert torch.allclose(r @ r.T, torch.eye(9, dtype=torch.float64), atol=1e-12)
    assert not torch.allclose(r.abs(), torch.eye(9, dtype=torch.float64))


def test_pca_finds_the_dominant_direction():
    torch.manual_seed(0)
    direction = torch.randn(9, dtype=torch.float64)
    direction /= direction.norm()
    filters = torch.randn(50, 1)[:, :, None].double() * direction + 1e-3 * torch.randn(50, 1, 9)
    b = init_basis("pca", 3, 3, [filters.reshape(50, 1, 3, 3)])
    assert torch.allclose(b @ b.T, torch.eye(9, dtype=torch.float64), atol=1e-10)
    assert abs(float(b[0] @ direction)) > 0.999
    assert float(b[0][b[0].abs().argmax()]) > 0  # sign convention


def test_unknown_basis_and_pca_without_filters():
    with pytest.raises(ValueError, match="unknown basis 'haar'"):
        init_basis("haar", 3, 3)
    with pytest.raises(ValueError, match="needs the layer's current filters"):
        init_basis("pca", 3, 3)


def test_filter_basis_normalises_rows_and_can_be_frozen():
    fb = FilterBasis((3, 3), init="dct")
    with torch.no_grad():
        fb.weight.mul_(torch.arange(1, 10, dtype=torch.float32)[:, None])
    assert torch.allclose(fb().norm(dim=1), torch.ones(9), atol=1e-6)
    raw = FilterBasis((3, 3), init="dct", normalize=False)
    with torch.no_grad():
        raw.weight.mul_(3.0)
    assert torch.allclose(raw().norm(dim=1), torch.full((9,), 3.0), atol=1e-6)
    assert not FilterBasis((3, 3), trainable=False).weight.requires_grad
    assert fb.filters().shape == (9, 3, 3)
