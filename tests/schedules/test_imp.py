import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.foundations.checkpoint import load_tensors
from interspace_pruning.schedules import RewindPoint, imp_levels, rewind
from interspace_pruning.training import TrainConfig, train

from .conftest import small_model


def test_levels():
    assert imp_levels(0.9, rounds=2) == pytest.approx([1 - 0.1**0.5, 0.9])
    levels = imp_levels(0.5, rate=0.2)
    assert levels == pytest.approx([0.2, 0.36, 0.488, 0.5])
    assert imp_levels(0.36, rate=0.2) == pytest.approx([0.2, 0.36])
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        imp_levels(0.9, rounds=0)


@pytest.mark.parametrize("rewind_step", [0, 5])
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_rewind_restores_exactly_the_saved_state(rewind_step, representation, digits):
    model = small_model(representation)
    ip.prunable(model)
    point = RewindPoint(rewind_step)
    seen = {}

    class Spy(RewindPoint):  # an independent copy of the state at the rewind step
        def on_step_end(self, state):
            if state.step + 1 == rewind_step:
                seen.update({k: v.clone() for k, v in state.model.state_dict().items()})

    if rewind_step == 0:
        seen.update({k: v.clone() for k, v in model.state_dict().items()})
    train(
        model,
        digits,
        TrainConfig(epochs=1, batch_size=32),
        callbacks=[point, Spy()],
        progress=False,
    )
    assert point.state is not None
    ip.prune(model, "magnitude", 0.7)
    masks = [e.mask.clone() for e in ip.prunable(model)]
    rewind(model, point.state)
    now = model.state_dict()
    for k, v in seen.items():
        if k.endswith(".mask"):
            continue
        if k.endswith("parametrizations.weight.original"):
            mask = now[k.replace("original", "0.mask")]
            assert torch.equal(now[k], v * mask), k  # unpruned entries exactly as saved
        else:
            assert torch.equal(now[k], v), k  # filter bases, BN, biases
    assert all(torch.equal(e.mask, m) for e, m in zip(ip.prunable(model), masks, strict=True))
    if representation == "ip":
        assert any(k.endswith("basis.weight") for k in seen)


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_imp_rounds_prune_the_right_fraction(representation, digits, tmp_path):
    cfg = RunConfig(
        prune=PruneConfig(representation=representation, method="imp", sparsity=0.75),
        train=TrainConfig(epochs=1, batch_size=32),
        options={"imp": {"rounds": 2, "rewind_step": 3}},
    )
    result = run(cfg, tmp_path, dataset=digits, progress=False)
    rounds = result.summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["sparsity"] for r in rounds] == pytest.approx([0.0, 0.5, 0.75], abs=1e-3)
    m1 = load_tensors(tmp_path / "round_1" / "masks.pt")
    m2 = load_tensors(tmp_path / "round_2" / "masks.pt")
    assert set(m1) == {e.name for e in ip.prunable(result.model)}
    for name in m1:
        assert bool((m2[name] <= m1[name]).all())  # nested tickets
    for r in range(3):
        assert (tmp_path / f"round_{r}" / "metrics.jsonl").is_file()
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "model.pt").is_file()
