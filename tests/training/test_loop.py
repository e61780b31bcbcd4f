import math

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning import data
from interspace_pruning.foundations.io import read_jsonl
from interspace_pruning.training import TrainConfig, TrainingError, lr_factor, param_groups, train


@pytest.fixture(scope="module")
def digits():
    return data.get("digits", train_subset=300, test_subset=100)


def _model(seed=0):
    torch.manual_seed(seed)
    return ip.models.get("convnet", 10, 1, width=8)


def test_training_learns_and_writes_metrics(digits, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05)
    history = train(_model(), digits, cfg, out_dir=tmp_path, progress=False)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows == history
    keys = {"train_loss", "train_acc", "test_loss", "test_acc", "sparsity", "lr", "epoch_time"}
    assert keys <= set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["test_acc"] > 0.3  # chance is 0.1


def test_eval_every_evaluates_every_nth_epoch_and_the_last_and_trains_the_same(digits):
    cfg = TrainConfig(epochs=5, batch_size=32, lr=0.05, eval_every=2)
    assert [e for e in range(1, 6) if cfg.evaluates_after(e)] == [2, 4, 5]
    assert cfg.evaluations() == 3 and TrainConfig(epochs=5).evaluations() == 5
    sparse = train(_model(), digits, cfg, progress=False)
    every = train(_model(), digits, TrainConfig(epochs=5, batch_size=32, lr=0.05), progress=False)
    assert ["test_acc" in r for r in sparse] == [False, True, False, True, True]
    assert ["test_loss" in r for r in sparse] == [False, True, False, True, True]
    for a, b in zip(sparse, every, strict=True):  # evaluating changes nothing that is trained
        assert a["train_loss"] == b["train_loss"] and a["lr"] == b["lr"]
        if "test_acc" in a:
            assert (a["test_acc"], a["test_loss"]) == (b["test_acc"], b["test_loss"])


def test_same_seed_same_metrics(digits):
    def once():
        model = ip.to_interspace(_model())
        ip.prune(model, "random", 0.8)
        hist = train(model, digits, TrainConfig(epochs=2, batch_size=32, seed=5), progress=False)
        return [{k: v for k, v in h.items() if "time" not in k and k != "elapsed"} for h in hist]

    first, second = once(), once()
    assert first == second
    torch.manual_seed(0)
    other = train(_model(), digits, TrainConfig(epochs=2, batch_size=32, seed=6), progress=False)
    assert other[-1]["train_loss"] != first[-1]["train_loss"]


def test_nan_loss_stops_with_a_clear_message(digits):
    model = _model()
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, step 0; lower the"):
        train(model, digits, TrainConfig(epochs=1), progress=False)


def test_schedules():
    cos = TrainConfig(schedule="cosine")
    assert lr_factor(cos, 0, 100) == 1.0 and lr_factor(cos, 50, 100) == pytest.approx(0.5)
    step = TrainConfig(schedule="step", step_milestones="0.5,0.75", step_gamma=0.1)
    assert [lr_factor(step, s, 100) for s in (0, 49, 50, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.01, 0.01]
    )
    one = TrainConfig(schedule="onecycle")
    assert lr_factor(one, 0, 100) < 0.1 and lr_factor(one, 30, 100) == pytest.approx(1.0)
    assert lr_factor(one, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(TrainConfig(schedule="constant"), 77, 100) == 1.0


def test_basis_gets_its_own_group(digits):
    model = ip.to_interspace(_model())
    cfg = TrainConfig(weight_decay=1e-3, basis_weight_decay=0.0, basis_lr_mult=0.1, lr=0.2)
    groups = param_groups(model, cfg)
    fb = {id(p) for p in ip.basis_parameters(model)}
    assert {id(p) for p in groups[1]["params"]} == fb
    assert groups[1]["weight_decay"] == 0.0 and math.isclose(groups[1]["lr"], 0.02)
    assert not fb & {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 1e-3 and groups[0]["lr"] == 0.2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "--epochs must be >= 1"),
        ({"lr": -1.0}, "--lr must be > 0"),
        ({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
        ({"schedule": "poly"}, "unknown schedule 'poly'"),
        ({"step_milestones": "half"}, "comma-separated fractions"),
        ({"label_smoothing": 1.0}, "--label-smoothing"),
        ({"eval_every": 0}, "--eval-every must be >= 1"),
    ],
)
def test_invalid_training_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)
