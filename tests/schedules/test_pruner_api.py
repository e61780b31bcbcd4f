"""The library in a user's own loop: ``ip.prepare`` + ``ip.pruner`` on a model it never saw."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import interspace_pruning as ip

STEPS = 24


class UserNet(nn.Module):
    """Not from the model zoo: grouped and dilated convs, a 1x1, no BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=2)
        self.c = nn.Conv2d(16, 16, 1)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.a(x))
        x = F.relu(self.c(F.relu(self.b(x))))
        return self.head(x.mean(dim=(2, 3)))


def batches(n: int = STEPS, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 5, (8,), generator=g))
        for _ in range(n)
    ]


def setup(rep: str, name: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    model = ip.prepare(UserNet(), rep)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    pruner = ip.pruner(name, model, opt, sparsity=0.8, total_steps=STEPS, **options)
    return model, opt, pruner


def train_steps(model, opt, pruner, data, masks=None):
    for x, y in data:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step()
        if masks is not None:
            masks.append([e.mask.bool().clone() for e in ip.prunable(model)])


def pruned_entries_are_zero(model, opt) -> bool:
    for e in ip.prunable(model):
        off = e.mask == 0
        if not bool((e.param.detach()[off] == 0).all()):
            return False
        for v in opt.state.get(e.param, {}).values():
            if isinstance(v, torch.Tensor) and v.shape == e.param.shape and v[off].any():
                return False
    return True


@pytest.mark.parametrize("rep", ["sp", "ip"])
@pytest.mark.parametrize("name", ["rigl", "gmp", "set", "snip"])
def test_plain_loop_exact_sparsity_and_zeros(rep, name):
    data = batches()
    options = {"data": data[:2]} if name == "snip" else {}
    model, opt, pruner = setup(rep, name, **options)
    masks = []
    train_steps(model, opt, pruner, data, masks)
    total = sum(e.numel() for e in ip.prunable(model))
    assert ip.sparsity_report(model).nonzero == round(0.2 * total)  # exact final sparsity
    assert pruned_entries_are_zero(model, opt)  # AdamW with weight decay: param and moments
    assert {e.kind for e in ip.prunable(model) if e.module is model.b} == {rep}
    if name in ("rigl", "set"):
        assert any(not torch.equal(a, b) for a, b in zip(masks[0], masks[-1], strict=True)), (
            "masks never changed"
        )
        assert [int(m.sum()) for m in masks[0]] == [int(m.sum()) for m in masks[-1]]


@pytest.mark.parametrize("rep", ["sp", "ip"])
@pytest.mark.parametrize("name", ["rigl", "gmp", "set"])
def test_resume_from_state_dicts_equals_uninterrupted(rep, name):
    data = batches()
    model, opt, pruner = setup(rep, name)
    train_steps(model, opt, pruner, data)

    model2, opt2, pruner2 = setup(rep, name)
    train_steps(model2, opt2, pruner2, data[:10])
    saved = copy.deepcopy(
        {"model": model2.state_dict(), "opt": opt2.state_dict(), "pruner": pruner2.state_dict()}
    )
    model3, opt3, pruner3 = setup(rep, name, seed=1)  # another init: all comes from the save
    model3.load_state_dict(saved["model"])
    opt3.load_state_dict(saved["opt"])
    pruner3.load_state_dict(saved["pruner"])
    train_steps(model3, opt3, pruner3, data[10:])
    for k, v in model.state_dict().items():
        assert torch.equal(v, model3.state_dict()[k]), k


def test_queries_are_pure_and_report_dense():
    model = UserNet()
    keys = list(model.state_dict())
    entries = ip.prunable(model)
    report = ip.sparsity_report(model)
    ip.costs(model, (3, 8, 8))
    assert list(model.state_dict()) == keys
    assert {e.kind for e in entries} == {"dense"} and report.sparsity == 0.0
    with pytest.raises(ValueError, match="call ip.prepare"):
        entries[0].set_mask(torch.zeros_like(entries[0].param))
    assert ip.prepare(model, "sp") is model
    assert len(model.state_dict()) > len(keys)


def test_representation_values_and_errors():
    rep = ip.Representation.interspace(basis="standard", share="network", trainable_basis=False)
    model = ip.prepare(UserNet(), rep)
    assert {e.kind for e in ip.prunable(model)} == {"ip", "sp"}
    assert len(ip.filter_bases(model)) == 1 and not ip.basis_parameters(model)[0].requires_grad
    assert ip.Representation.parse("sp") == ip.Representation.spatial()
    with pytest.raises(ValueError, match="unknown representation"):
        ip.prepare(UserNet(), "fp16")
    with pytest.raises(ValueError, match="interspace representation"):
        ip.prepare(model, "sp")
    with pytest.raises(ValueError, match="already prepared"):
        ip.prepare(model, "dense")


def test_pruner_options_are_typed():
    model = ip.prepare(UserNet(), "sp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="has no option 'dt'"):
        ip.pruner("rigl", model, opt, sparsity=0.5, total_steps=10, dt=3)
    with pytest.raises(ValueError, match="must be int"):
        ip.pruner("rigl", model, opt, sparsity=0.5, total_steps=10, interval="3")
    with pytest.raises(ValueError, match="unknown pruner 'lottery'"):
        ip.pruner("lottery", model, opt, sparsity=0.5, total_steps=10)
    with pytest.raises(ValueError, match="does not hold the prunable tensor of 'a'"):
        ip.pruner("gmp", model, torch.optim.SGD(model.head.parameters(), lr=0.1), 0.5, 10)
    late = UserNet()
    early_opt = torch.optim.SGD(late.parameters(), lr=0.1)
    ip.prepare(late, "ip")  # new filter bases the optimiser never saw
    with pytest.warns(UserWarning, match="does not train the filter bases"):
        ip.pruner("gmp", late, early_opt, sparsity=0.5, total_steps=10)


def test_a_registered_schedule_is_built_by_the_same_call():
    from dataclasses import dataclass

    from interspace_pruning.schedules import AllocationOptions, Pruner, register_schedule

    @dataclass
    class HalfwayOptions(AllocationOptions):
        at: float = 0.5

    class Halfway(Pruner):
        def __init__(self, sparsity, at, **kw):
            super().__init__(**kw)
            self.target, self.at = sparsity, at

        def update(self, t):
            if t == round(self.at * self.total_steps):
                self.change_masks(
                    t, self.target, lambda: ip.prune(self.model, "magnitude", self.target)
                )

    @register_schedule("halfway-test", HalfwayOptions)
    def build(o, sparsity, total_steps):
        return Halfway(sparsity, o.at, **o.allocation_kwargs())

    assert "halfway-test" in ip.pruner_names()
    model, opt, pruner = setup("ip", "halfway-test", at=0.25)
    train_steps(model, opt, pruner, batches(8))
    assert [s for s, _, _ in pruner.events] == [6]  # 0.25 * STEPS
    assert ip.sparsity_report(model).sparsity == pytest.approx(0.8, abs=1e-3)


def test_lottery_ticket_outer_loop_rewinds_to_init():
    torch.manual_seed(0)
    model = ip.prepare(UserNet(), "ip")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    data = batches(6)
    seen = []

    def train(model, round):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        seen.append({k: v.clone() for k, v in model.state_dict().items() if k.endswith("original")})
        train_steps(model, opt, round, data)

    reports = ip.lottery_ticket(model, train, 0.75, rounds=2)
    assert [r.sparsity for r in reports] == pytest.approx([0.0, 0.5, 0.75], abs=1e-3)
    for k, v in seen[2].items():  # round 2 started from the initial values, masked
        mask = model.state_dict()[k.replace("original", "0.mask")]
        assert torch.equal(v, init[k] * mask)
