import copy
import io

import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.interspace import InterspaceWeight

from ..conftest import MixedNet

BASES = ["dct", "standard", "random", "pca"]


def _train_a_little(model: nn.Module, x: torch.Tensor) -> None:
    """Move the weights away from their initialisation, as in a trained model."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(5):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("share", ["layer", "network"])
@pytest.mark.parametrize("trained", [False, True])
def test_conversion_keeps_outputs(basis, share, trained, mixed_net, images):
    if trained:
        _train_a_little(mixed_net, images)
    before = mixed_net(images)
    ip.to_interspace(mixed_net, basis=basis, share=share)
    assert torch.allclose(mixed_net(images), before, rtol=1e-4, atol=1e-5)
    assert isinstance(mixed_net.stem, nn.Conv2d)  # the model keeps its module types


def test_which_layers_are_converted(mixed_net):
    ip.to_interspace(mixed_net)
    kinds = {e.name: e.kind for e in ip.prunable(mixed_net)}
    assert kinds == {
        "stem": "ip",
        "dilated": "ip",
        "grouped": "ip",
        "depthwise": "ip",
        "nonsquare": "ip",
        "tall": "ip",
        "pointwise": "sp",
        "fc": "sp",
    }
    entries = {e.name: e for e in ip.prunable(mixed_net)}
    assert entries["grouped"].param.shape == (12, 2, 9)
    assert entries["depthwise"].param.shape == (12, 1, 25)
    assert entries["nonsquare"].param.shape == (6, 12, 3)
    assert entries["tall"].param.shape == (6, 6, 6)


def test_share_network_uses_one_basis_per_kernel_shape(mixed_net):
    ip.to_interspace(mixed_net, share="network")
    bases = ip.filter_bases(mixed_net)
    assert sorted(fb.kernel_size for fb in bases) == [(1, 3), (3, 2), (3, 3), (5, 5)]
    stem_fb = mixed_net.stem.parametrizations.weight[0].basis
    assert mixed_net.dilated.parametrizations.weight[0].basis is stem_fb
    assert mixed_net.grouped.parametrizations.weight[0].basis is stem_fb
    # the shared basis gets gradient from every layer that uses it
    mixed_net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert stem_fb.weight.grad is not None and stem_fb.weight.grad.abs().sum() > 0


def test_frozen_basis_gets_no_gradient(mixed_net, images):
    ip.to_interspace(mixed_net, trainable_basis=False)
    mixed_net(images).sum().backward()
    assert all(fb.weight.grad is None for fb in ip.filter_bases(mixed_net))
    assert all(not p.requires_grad for p in ip.basis_parameters(mixed_net))


def _pruned(model: MixedNet, images: torch.Tensor) -> MixedNet:
    ip.to_interspace(model)
    ip.prune(model, "magnitude", 0.7)
    with torch.no_grad():  # let the basis drift so that nothing is trivially orthonormal
        for fb in ip.filter_bases(model):
            fb.weight.add_(0.1 * torch.randn_like(fb.weight))
    return model


def test_fold_gives_a_plain_model_with_the_same_outputs(mixed_net, images):
    model = _pruned(mixed_net, images)
    plain = ip.fold(model)
    assert torch.allclose(plain(images), model(images), atol=1e-6)
    for m in plain.modules():
        assert type(m).__module__.startswith(("torch.", "tests.", "conftest")), type(m)
        assert not hasattr(m, "parametrizations")
    assert set(plain.state_dict()) == set(MixedNet().state_dict())
    buf = io.BytesIO()
    torch.save(plain.state_dict(), buf)
    assert b"interspace" not in buf.getvalue()
    # the original is untouched (deepcopy shares parametrized classes in torch)
    assert ip.is_interspace(model.stem)
    assert torch.allclose(plain(images), model(images), atol=1e-6)


def test_fold_of_a_user_defined_model_pickles_without_the_library(images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model(images)
    ip.to_interspace(model)
    ip.prune(model, "random", 0.5)
    buf = io.BytesIO()
    torch.save(ip.fold(model), buf)
    assert b"interspace_pruning" not in buf.getvalue()
    assert type(ip.fold(model)[0]) is nn.Conv2d


def test_deepcopy_is_independent_and_equal(mixed_net, images):
    model = _pruned(mixed_net, images)
    twin = copy.deepcopy(model)
    assert torch.allclose(twin(images), model(images))
    with torch.no_grad():
        ip.prunable(twin)[0].param.mul_(2.0)
    assert not torch.allclose(twin(images), model(images))
    ip.fold(twin, inplace=True)
    assert ip.is_interspace(model.stem) and not ip.is_interspace(twin.stem)
    model(images)  # still works


@pytest.mark.parametrize("share", ["layer", "network"])
def test_state_dict_round_trip(share, images):
    torch.manual_seed(0)
    src = ip.to_interspace(MixedNet().eval(), share=share)
    ip.prune(src, "random", 0.8)
    with torch.no_grad():
        for fb in ip.filter_bases(src):
            fb.weight.add_(0.1 * torch.randn_like(fb.weight))
    torch.manual_seed(1)
    dst = ip.to_interspace(MixedNet().eval(), share=share)
    assert not torch.allclose(dst(images), src(images))
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(dst(images), src(images))
    for a, b in zip(ip.prunable(src), ip.prunable(dst), strict=True):
        assert torch.equal(a.mask, b.mask)
        assert torch.all(b.param[b.mask == 0] == 0)
    if share == "network":  # sharing survives loading
        assert (
            dst.stem.parametrizations.weight[0].basis
            is dst.dilated.parametrizations.weight[0].basis
        )


def test_assigning_spatial_weights_solves_the_coefficients(mixed_net, images):
    ip.to_interspace(mixed_net, basis="random")
    w = torch.randn_like(mixed_net.stem.weight)
    mixed_net.stem.weight = w
    assert torch.allclose(mixed_net.stem.weight, w, atol=1e-5)


def test_conversion_errors(mixed_net):
    with pytest.raises(ValueError, match="unknown basis 'wavelet'"):
        ip.to_interspace(mixed_net, basis="wavelet")
    with pytest.raises(ValueError, match="unknown share mode 'block'"):
        ip.to_interspace(mixed_net, share="block")
    with pytest.raises(ValueError, match="no nn.Conv2d with a kernel larger than 1x1"):
        ip.to_interspace(nn.Sequential(nn.Linear(3, 3)))
    ip.to_interspace(mixed_net)
    with pytest.raises(ValueError, match="already in the interspace representation"):
        ip.to_interspace(mixed_net)


def test_converting_an_sp_pruned_model_is_refused_but_unpruned_masks_are_fine():
    torch.manual_seed(0)
    model = MixedNet()
    ip.prepare(model, "sp")  # attaches all-ones SP masks
    ip.to_interspace(model)
    assert ip.is_interspace(model.stem)
    pruned = MixedNet()
    ip.prune(pruned, "magnitude", 0.5)
    with pytest.raises(ValueError, match="already pruned in the spatial basis"):
        ip.to_interspace(pruned)


def test_interspace_weight_rejects_mismatched_basis():
    fb = ip.FilterBasis((3, 3))
    with pytest.raises(ValueError, match="cannot represent a 5x5 kernel"):
        InterspaceWeight(torch.zeros(2, 2, 5, 5), fb)
