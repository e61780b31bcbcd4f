"""Masked entries stay exactly zero through optimisers and state_dict round trips."""

import io

import pytest
import torch
import torch.nn.functional as F

import interspace_pruning as ip

from ..conftest import MixedNet

OPTIMISERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-4),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


def _masked_entries_zero(model) -> bool:
    return all(bool((e.param[e.mask == 0] == 0).all()) for e in ip.prunable(model))


@pytest.mark.parametrize("opt_name", list(OPTIMISERS))
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_masked_entries_stay_zero_under_training(opt_name, representation, images):
    torch.manual_seed(0)
    model = MixedNet().train()
    if representation == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", 0.9)
    masks = [e.mask.clone() for e in ip.prunable(model)]
    opt = OPTIMISERS[opt_name](model.parameters())
    target = torch.randint(0, 5, (4,))
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(images), target).backward()
        opt.step()
    assert _masked_entries_zero(model)
    for e, m in zip(ip.prunable(model), masks, strict=True):
        assert torch.equal(e.mask, m)
        # the kept entries did train
    assert any(bool((e.param[e.mask == 1] != 0).all()) for e in ip.prunable(model))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = ip.prepare(MixedNet(), representation)  # the same parametrisations
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert _masked_entries_zero(fresh)
    assert torch.equal(fresh.eval()(images), model.eval()(images))


def test_keep_masked_guards_stale_optimiser_state(images):
    """Pruning mid-training with momentum: the hook keeps the stored tensor exactly sparse."""
    target = torch.randint(0, 5, (4,))

    def run(with_hook: bool) -> bool:
        torch.manual_seed(0)
        model = ip.to_interspace(MixedNet().train())
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        if with_hook:
            ip.keep_masked(opt, model)
        for step in range(6):
            if step == 3:
                ip.prune(model, "magnitude", 0.8)
            opt.zero_grad()
            F.cross_entropy(model(images), target).backward()
            opt.step()
        return _masked_entries_zero(model)

    assert not run(with_hook=False)  # momentum alone revives the stored values...
    assert run(with_hook=True)  # ...which the hook prevents


def test_set_mask_checks_shape(mixed_net):
    with pytest.raises(ValueError, match="call ip.prepare"):  # a dense entry has no mask
        ip.prunable(mixed_net)[0].set_mask(torch.ones(3))
    entry = ip.prunable(ip.prepare(mixed_net, "sp"))[0]
    with pytest.raises(ValueError, match="does not match"):
        entry.set_mask(torch.ones(3))


def test_nothing_prunable():
    with pytest.raises(ValueError, match="nothing prunable"):
        ip.prunable(torch.nn.Sequential(torch.nn.ReLU()))
