import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import interspace_pruning as ip
from interspace_pruning.inference import costs


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))


def test_costs_by_hand_sp():
    model = ip.prepare(_net(), "sp")
    entries = ip.prunable(model)
    mask = torch.zeros(4, 2, 3, 3)
    mask.view(-1)[:10] = 1
    entries[0].set_mask(mask)
    c = costs(model, (2, 5, 5))  # 5x5 -> 3x3: P = 9 output pixels
    conv, fc = c.layers
    assert conv.dense_flops == 2 * 4 * 2 * 9 * 9
    assert conv.sparse_flops == 2 * 10 * 9
    assert fc.dense_flops == fc.sparse_flops == 2 * 36 * 3
    assert c.dense_flops == conv.dense_flops + fc.dense_flops
    assert c.sparse_flops == conv.sparse_flops + fc.sparse_flops
    assert conv.nonzero == 10 and c.nonzero_params == 10 + 108 + 3
    # CSR bytes: 10 float values, 10 int16 columns, 5 int32 row pointers
    assert conv.bytes == 10 * 4 + 10 * 2 + 5 * 4


def test_costs_by_hand_ip():
    model = _net()
    ip.to_interspace(model)
    entries = ip.prunable(model)
    mask = torch.zeros(4, 2, 9)
    mask[0, 0, 0] = mask[1, 0, 0] = 1  # channel 0 needs basis filter 0 (once)
    mask[2, 1, 3] = mask[3, 1, 5] = mask[3, 1, 3] = 1  # channel 1 needs filters 3 and 5
    entries[0].set_mask(mask)
    c = costs(model, (2, 5, 5))
    conv = c.layers[0]
    used_pairs, nnz, pixels = 3, 5, 9
    assert conv.sparse_flops == 2 * (used_pairs * 9 + nnz) * pixels
    assert c.basis_params == 81


def test_dense_total_matches_flop_counter():
    model = ip.models.get("resnet20")
    ip.prune(model, "random", 0.5)
    c = costs(model, (3, 32, 32))
    with FlopCounterMode(display=False) as counter:
        ip.fold(model)(torch.zeros(1, 3, 32, 32))
    assert c.dense_flops == counter.get_total_flops()
    assert sum(r.dense_flops for r in c.layers) == c.dense_flops  # only convs and the fc
    assert c.sparse_flops < c.dense_flops and c.compression > 1.2  # 6 bytes per kept entry
    assert "MFLOPs" in str(c)


def test_unpruned_model_costs():
    c = costs(ip.models.get("convnet", 10, 1), (1, 8, 8))
    assert c.layers == [] and c.sparse_flops == c.dense_flops
    assert c.sparse_bytes == c.dense_bytes
