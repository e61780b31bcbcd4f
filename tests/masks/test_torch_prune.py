"""Round trips between ``torch.nn.utils.prune`` and this library's SP masks."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import interspace_pruning as ip
from interspace_pruning.masks.torch_prune import (
    from_torch_prune,
    load_torch_prune_state_dict,
    to_torch_prune,
)
from tests.models.user_builder import TinyResNet


def torch_pruned_model(seed=0):
    """A model pruned by torch.nn.utils.prune only (global L1 plus one random layer)."""
    torch.manual_seed(seed)
    model = TinyResNet(10, 1, 8).eval()
    convs = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d)]
    torch_prune.global_unstructured(convs, torch_prune.L1Unstructured, amount=0.7)
    torch_prune.random_unstructured(model.head, "weight", amount=0.5)
    torch_prune.l1_unstructured(model.head, "weight", amount=0.2)  # a PruningContainer
    return model


def x():
    return torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_import_keeps_masks_and_outputs():
    model = torch_pruned_model()
    expected_out = model(x())
    expected = {
        n: m.weight_mask.clone() for n, m in model.named_modules() if hasattr(m, "weight_mask")
    }
    from_torch_prune(model)
    assert not any(hasattr(m, "weight_orig") for m in model.modules())
    entries = {e.name: e for e in ip.prunable(model)}
    assert set(expected) == set(entries)
    for name, mask in expected.items():
        assert torch.equal(entries[name].mask, mask)
        assert bool((entries[name].param[mask == 0] == 0).all())
        assert entries[name].kind == "sp"
    torch.testing.assert_close(model(x()), expected_out, rtol=0, atol=0)
    report = ip.sparsity_report(model)
    assert report.nonzero == sum(int(m.sum()) for m in expected.values())


def test_export_and_back_again():
    torch.manual_seed(2)
    model = TinyResNet(10, 1, 8).eval()
    ip.prune(model, "magnitude", 0.8)
    masks = [e.mask.clone() for e in ip.prunable(model)]
    out = model(x())
    to_torch_prune(model)
    assert not any(hasattr(m, "parametrizations") for m in model.modules())
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert [m.weight_mask for m in layers] and all(torch_prune.is_pruned(m) for m in layers)
    for m, mask in zip(layers, masks, strict=True):
        assert torch.equal(m.weight_mask, mask)
    torch.testing.assert_close(model(x()), out, rtol=0, atol=0)
    # torch's own tools work on it: make it permanent, or prune further
    torch_prune.l1_unstructured(layers[0], "weight", amount=0.1)
    further = layers[0].weight_mask.clone()
    assert int(further.sum()) < int(masks[0].sum())
    from_torch_prune(model)
    assert torch.equal(ip.prunable(model)[0].mask, further)
    for e, mask in list(zip(ip.prunable(model), masks, strict=True))[1:]:
        assert torch.equal(e.mask, mask)


def test_state_dict_of_a_torch_pruned_model_loads_into_a_plain_one():
    source = torch_pruned_model(seed=3)
    out = source(x())
    state = source.state_dict()
    assert any(k.endswith("weight_orig") for k in state)
    target = load_torch_prune_state_dict(TinyResNet(10, 1, 8).eval(), state)
    torch.testing.assert_close(target(x()), out, rtol=0, atol=0)
    kept = {e.name: e.num_kept() for e in ip.prunable(target)}
    assert kept["head"] == int(state["head.weight_mask"].sum())
    with pytest.raises(ValueError, match="does not fit TinyResNet"):
        load_torch_prune_state_dict(TinyResNet(10, 1, 4), state)


def test_what_cannot_be_converted_is_refused_in_one_line():
    model = TinyResNet(10, 1, 8)
    torch_prune.l1_unstructured(model.head, "bias", amount=0.5)
    with pytest.raises(ValueError, match=r"head\.bias is pruned.*prune\.remove"):
        from_torch_prune(model)
    bn = TinyResNet(10, 1, 8)
    torch_prune.l1_unstructured(bn.stem[1], "weight", amount=0.5)
    with pytest.raises(ValueError, match="BatchNorm2d.*Conv2d/nn.Linear weights only"):
        from_torch_prune(bn)
    ip_model = ip.to_interspace(TinyResNet(10, 1, 8))
    with pytest.raises(ValueError, match="IP coefficients"):
        to_torch_prune(ip_model)
