"""Linear learning-rate warm-up in front of every schedule."""

import dataclasses
import itertools

import pytest
import torch

from interspace_pruning.training import TrainConfig, build_optimizer, build_scheduler, lr_factor

SCHEDULES = ("cosine", "step", "onecycle", "constant")
TOTAL = 200  # 10 epochs of 20 steps


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_zero_warmup_leaves_every_schedule_unchanged(schedule):
    plain = TrainConfig(epochs=10, schedule=schedule)
    zero = dataclasses.replace(plain, warmup_epochs=0.0)
    for step in range(TOTAL):
        assert lr_factor(zero, step, TOTAL) == lr_factor(plain, step, TOTAL)


def test_warmup_rises_linearly_then_follows_the_schedule_over_the_rest():
    cfg = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2)  # 40 warm-up steps
    ramp = [lr_factor(cfg, s, TOTAL) for s in range(40)]
    assert 0 < ramp[0] < 0.05
    steps = [b - a for a, b in itertools.pairwise(ramp)]
    assert all(d == pytest.approx(steps[0]) and d > 0 for d in steps)  # linear, increasing
    assert ramp[-1] < 1.0
    assert lr_factor(cfg, 40, TOTAL) == 1.0  # peak right after the warm-up
    # the cosine then runs over the remaining 160 steps: half-way down at 40 + 80
    assert lr_factor(cfg, 120, TOTAL) == pytest.approx(0.5)
    assert lr_factor(cfg, TOTAL - 1, TOTAL) < 0.001


def test_warmup_before_step_schedule_counts_milestones_after_it():
    cfg = TrainConfig(epochs=10, schedule="step", step_milestones="0.5", warmup_epochs=1)
    # 20 warm-up steps, then 180 steps with the decay at half of them (step 20 + 90)
    assert lr_factor(cfg, 109, TOTAL) == 1.0
    assert lr_factor(cfg, 110, TOTAL) == pytest.approx(0.1)


def test_fractional_warmup_and_scheduler():
    cfg = TrainConfig(epochs=4, lr=0.1, warmup_epochs=0.5)  # 5 steps of an epoch of 10
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, 40)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.1 * (s + 1) / 6 for s in range(5)])
    assert lrs[5] == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [-0.5, 4, 7.5])
def test_warmup_must_fit_in_training(bad):
    with pytest.raises(ValueError, match="--warmup-epochs"):
        TrainConfig(epochs=4, warmup_epochs=bad)
