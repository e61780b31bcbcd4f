"""IP with the standard basis, frozen and unnormalised, is exactly SP."""

import copy

import torch

import interspace_pruning as ip

from ..conftest import MixedNet


def _same_masks(sp_model, ip_model, seed=3):
    g = torch.Generator().manual_seed(seed)
    for s, i in zip(ip.prunable(sp_model), ip.prunable(ip_model), strict=True):
        m = (torch.rand(s.param.shape, generator=g) > 0.6).float()
        s.set_mask(m)
        i.set_mask(m.reshape(i.param.shape))


def test_standard_frozen_basis_equals_sp(images):
    torch.manual_seed(0)
    sp_model = MixedNet().train()
    ip_model = copy.deepcopy(sp_model)
    ip.prepare(sp_model, "sp")
    ip.to_interspace(ip_model, basis="standard", trainable_basis=False, normalize=False)
    _same_masks(sp_model, ip_model)

    target = torch.randint(0, 5, (4,))
    opt_sp = torch.optim.SGD(sp_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt_ip = torch.optim.SGD(
        [p for p in ip_model.parameters() if p.requires_grad],
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-3,
    )
    for step in range(5):
        out_sp, out_ip = sp_model(images), ip_model(images)
        assert torch.allclose(out_sp, out_ip, atol=1e-6), step
        for opt, out in ((opt_sp, out_sp), (opt_ip, out_ip)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(out, target).backward()
        for s, i in zip(ip.prunable(sp_model), ip.prunable(ip_model), strict=True):
            assert torch.allclose(s.param.grad, i.param.grad.reshape(s.param.shape), atol=1e-6)
            assert torch.equal(s.module.weight, i.module.weight) or torch.allclose(
                s.module.weight, i.module.weight, atol=1e-6
            )
        opt_sp.step()
        opt_ip.step()


def test_trainable_dct_basis_differs_from_sp(images):
    """The control: with an adaptive basis the two representations do diverge."""
    torch.manual_seed(0)
    sp_model = MixedNet().train()
    ip_model = copy.deepcopy(sp_model)
    ip.prepare(sp_model, "sp")
    ip.to_interspace(ip_model, basis="dct")
    ip.prune(sp_model, "magnitude", 0.8, allocation="uniform")
    ip.prune(ip_model, "magnitude", 0.8, allocation="uniform")
    assert not torch.allclose(sp_model(images), ip_model(images), atol=1e-3)
