import pytest
import torch
from torch import nn

import interspace_pruning as ip


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, bias=False),  # 72 weights
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, bias=True),  # 144 weights + 4 bias
        nn.Conv2d(4, 3, 1, bias=False),  # 12 weights
        nn.Flatten(),
        nn.LazyLinear(2),
    )


def test_report_counts_by_hand():
    model = _net()
    model(torch.zeros(1, 2, 5, 5))  # 5 -> 3 -> 1: the linear layer has 3*2 + 2 params
    ip.to_interspace(model)
    entries = ip.prunable(model)
    entries[0].set_mask(torch.zeros(4, 2, 9).index_fill_(2, torch.tensor([0]), 1))
    rep = ip.sparsity_report(model)
    assert [(r.name, r.kind, r.total) for r in rep.layers] == [
        ("0", "ip", 72),
        ("2", "ip", 144),
        ("3", "sp", 12),
        ("5", "sp", 6),
    ]
    assert rep.layers[0].nonzero == 8
    assert rep.total == 234 and rep.nonzero == 234 - 64
    assert rep.sparsity == pytest.approx(64 / 234)
    assert rep.basis_params == 2 * 81
    dense = 72 + 144 + 4 + 12 + 6 + 2
    assert rep.dense_model_params == dense
    assert rep.basis_overhead == pytest.approx(162 / dense)
    assert "filter bases: 162 parameters" in str(rep)
    d = rep.to_dict()
    assert d["layers"][0]["sparsity"] == pytest.approx(64 / 72)


def test_shared_basis_is_counted_once():
    model = _net()
    model(torch.zeros(1, 2, 5, 5))
    ip.to_interspace(model, share="network")
    assert ip.sparsity_report(model).basis_params == 81
