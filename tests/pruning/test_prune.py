import math

import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.pruning import round_sparsities

from ..conftest import MixedNet, random_batches

METHODS = ["random", "magnitude", "snip", "grasp", "synflow"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_every_method_runs_in_both_representations(method, representation):
    torch.manual_seed(0)
    model = MixedNet().train()
    if representation == "ip":
        ip.to_interspace(model)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    report = ip.prune(
        model,
        method,
        0.9,
        allocation="uniform",
        data=random_batches(2, (3, 16, 16), 5),
        rounds=5 if method == "synflow" else None,
    )
    total = report.total
    assert report.nonzero == round(0.1 * total)
    assert {r.kind for r in report.layers} == ({"sp"} if representation == "sp" else {"ip", "sp"})
    # scoring ran on a private copy: BN statistics and the mode are untouched
    after = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_scores_differ_between_representations():
    torch.manual_seed(0)
    sp_model = MixedNet()
    ip_model = ip.to_interspace(MixedNet())
    ip_model.load_state_dict(ip_model.state_dict())
    data = random_batches(1, (3, 16, 16), 5)
    ip.prune(sp_model, "snip", 0.9, data=data)
    ip.prune(ip_model, "snip", 0.9, data=data)
    assert ip.prunable(ip_model)[1].param.shape != ip.prunable(sp_model)[1].param.shape


def test_synflow_schedule_and_iteration():
    dens = [1 - s for s in round_sparsities(1.0, 0.99, 4)]
    assert dens[-1] == pytest.approx(0.01)
    ratios = [b / a for a, b in zip([1.0, *dens], dens, strict=False)]
    assert max(ratios) - min(ratios) < 1e-12  # geometric: exponential schedule
    assert round_sparsities(0.5, 0.9, 1) == pytest.approx([0.9])
    # iterating matters: 100 rounds give different masks than one shot
    torch.manual_seed(0)
    a, b = ip.models.get("convnet", 10, 1, width=8), ip.models.get("convnet", 10, 1, width=8)
    b.load_state_dict(a.state_dict())
    ip.prune(a, "synflow", 0.9, input_shape=(1, 8, 8), rounds=1)
    ip.prune(b, "synflow", 0.9, input_shape=(1, 8, 8))
    ma = torch.cat([e.mask.flatten() for e in ip.prunable(a)])
    mb = torch.cat([e.mask.flatten() for e in ip.prunable(b)])
    assert ma.sum() == mb.sum() and not torch.equal(ma, mb)


def test_one_shot_iterators_are_materialised():
    torch.manual_seed(0)
    a, b = MixedNet(), MixedNet()
    b.load_state_dict(a.state_dict())
    data = random_batches(2, (3, 16, 16), 5)
    ip.prune(a, "grasp", 0.8, data=data)
    ip.prune(b, "grasp", 0.8, data=iter(data))  # GraSP needs two passes
    for x, y in zip(ip.prunable(a), ip.prunable(b), strict=True):
        assert torch.equal(x.mask, y.mask)


def test_user_defined_method_through_the_registry():
    calls = []

    @ip.register_method("channel-index")
    def channel_index(ctx):
        calls.append(len(ctx.entries))
        return [torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) for p in ctx.params]

    assert "channel-index" in ip.method_names()
    model = MixedNet()
    ip.to_interspace(model)
    rep = ip.prune(model, "channel-index", 0.5, allocation="uniform")
    assert calls == [8] and rep.nonzero == round(0.5 * rep.total)
    # highest index kept: the last entry of each layer survives, the first does not
    e = ip.prunable(model)[0]
    assert e.mask.flatten()[-1] == 1 and e.mask.flatten()[0] == 0

    @ip.register_method("bad-shape")
    def bad_shape(ctx):
        return [torch.ones(3) for _ in ctx.params]

    with pytest.raises(ValueError, match="scored 'stem' with shape"):
        ip.prune(MixedNet(), "bad-shape", 0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "lots", None])
def test_invalid_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity must be"):
        ip.prune(MixedNet(), "random", bad)


def test_bad_arguments_name_the_problem():
    data = random_batches(1, (3, 16, 16), 5)
    with pytest.raises(ValueError, match="unknown pruning method 'obd'.*choose one of"):
        ip.prune(MixedNet(), "obd", 0.5)
    with pytest.raises(ValueError, match="unknown allocation 'layerwise'"):
        ip.prune(MixedNet(), "random", 0.5, allocation="layerwise")
    for method in ("snip", "grasp"):
        with pytest.raises(ValueError, match=f"method '{method}' is data-driven"):
            ip.prune(MixedNet(), method, 0.5)
    with pytest.raises(ValueError, match="synflow needs the input shape"):
        ip.prune(MixedNet(), "synflow", 0.5, rounds=1)
    with pytest.raises(ValueError, match="nothing prunable"):
        ip.prune(nn.Sequential(nn.ReLU()), "snip", 0.5, data=data)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        ip.prune(MixedNet(), "random", 0.5, rounds=0)
    with pytest.raises(ValueError, match="min_density must be in"):
        ip.prune(MixedNet(), "random", 0.5, min_density=2.0)


def test_keep_dense_options_through_prune():
    torch.manual_seed(0)
    model = ip.to_interspace(ip.models.get("resnet20"))
    rep = ip.prune(model, "magnitude", 0.95, keep_first_dense=True, keep_last_dense=True)
    layers = {r.name: r for r in rep.layers}
    assert layers["conv1"].sparsity == 0 and layers["fc"].sparsity == 0
    assert rep.nonzero == round(0.05 * rep.total)
    assert math.isclose(rep.sparsity, 0.95, abs_tol=1 / rep.total)
