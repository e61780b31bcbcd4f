"""A saved pruner state is checked like a file before it is used (issue 32): a missing
field, a wrong type or range, or another pruner's state is one line naming the field, and
nothing changes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.schedules import PrunerStateError, RewindPoint, check_pruner_state

from .test_options import Net


def bound(name: str = "rigl", total_steps: int = 20):
    model = ip.prepare(Net(), "sp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return ip.pruner(name, model, opt, 0.5, total_steps, interval=2)


def stepped(name: str = "rigl", steps: int = 5):
    """A pruner after ``steps`` real training steps, with its mask updates logged."""
    torch.manual_seed(0)
    p = bound(name)
    x, y = torch.randn(4, 1, 5, 5), torch.randint(0, 3, (4,))
    for _ in range(steps):
        p.optimizer.zero_grad()
        nn.functional.cross_entropy(p.model(x), y).backward()
        p.optimizer.step()
        p.step()
    return p


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and isinstance(e.value, ValueError)
    return text


BAD = [
    (lambda s: s.pop("events"), "has no 'events'"),
    (lambda s: s.update(events="abc"), "'events' must be a list"),
    (lambda s: s.update(events=[[1, 0.5]]), "'events[0]' must be [step, sparsity, changed]"),
    (lambda s: s.update(events=[[1, 2.0, 3]]), "events[0][1]' (sparsity) must be a number"),
    (lambda s: s.update(events=[[1, "x", 3]]), "(sparsity) must be a number"),
    (lambda s: s.update(events=[[99, 0.5, 3]]), "'events[0][0] (step)' must be a whole number"),
    (lambda s: s.update(events=[[1, 0.5, -3]]), "'events[0][2] (entries changed)'"),
    (lambda s: s.update(step=-5), "'step' must be a whole number >= 0, got -5"),
    (lambda s: s.update(step="5"), "'step' must be a whole number"),
    (lambda s: s.update(step=True), "'step' must be a whole number"),
    (lambda s: s.update(step=2.5), "'step' must be a whole number"),
    (lambda s: s.update(total_steps=-1), "'total_steps' must be a whole number >= 0"),
    (lambda s: s.update(name="gmp"), "is of the 'gmp' pruner, not of 'rigl'"),
    (lambda s: s.update(name=3), "'name' must be a pruner name"),
    (lambda s: s.pop("generator"), "has no 'generator'"),
    (lambda s: s.update(generator=[1, 2]), "'generator' must be the byte tensor"),
    (lambda s: s.update(generator=torch.zeros(7, dtype=torch.uint8)), "'generator' does not fit"),
]


@pytest.mark.parametrize("spoil,message", BAD, ids=[m for _, m in BAD])
def test_a_bad_state_is_one_line_naming_the_field_and_changes_nothing(spoil, message):
    good = stepped()
    state = copy.deepcopy(good.state_dict())
    spoil(state)
    target = stepped()
    before = (target.step_count, list(target.events), target.generator.get_state())
    with pytest.raises(PrunerStateError) as e:
        target.load_state_dict(state)
    text = one_line(e)
    assert message in text and "saved state of the rigl pruner" in text
    assert "state_dict()" in text or "resume with" in text  # says what to do
    assert (target.step_count, list(target.events)) == before[:2]
    assert torch.equal(target.generator.get_state(), before[2])


def test_not_a_dict_is_refused():
    with pytest.raises(PrunerStateError, match="must be a dict, got str"):
        bound().load_state_dict("step=3")


def test_a_good_state_round_trips_and_the_name_is_saved():
    p = stepped(steps=5)
    state = p.state_dict()
    assert state["name"] == "rigl" and state["step"] == 5 and p.events
    q = bound()
    q.load_state_dict(copy.deepcopy(state))
    assert q.step_count == 5 and q.events == p.events
    assert torch.equal(q.generator.get_state(), p.generator.get_state())


def test_states_saved_before_step_total_steps_and_name_still_load():
    p = stepped(steps=5)
    old = {k: v for k, v in p.state_dict().items() if k not in ("step", "total_steps", "name")}
    q = bound()
    q.load_state_dict(old)  # interspace train's first checkpoints: the loop sets the step
    assert q.step_count == 0 and q.events == p.events


def test_a_step_past_the_planned_steps_is_allowed():
    """Training past the plan keeps the masks fixed (the documented way to resume longer)."""
    p = bound("gmp", total_steps=4)
    state = p.state_dict()
    state["step"] = 10
    p.load_state_dict(state)
    assert p.step_count == 10


def test_a_known_bound_on_the_step_is_applied():
    state = stepped(steps=5).state_dict()
    check_pruner_state(state, max_step=5)
    with pytest.raises(PrunerStateError, match=r"from 0 to 4 \(the optimiser steps"):
        check_pruner_state(state, max_step=4)


def test_a_refused_plan_leaves_the_pruner_as_it_was():
    state = bound(total_steps=20).state_dict()
    target = bound(total_steps=30)
    with pytest.raises(ValueError, match="planned over 20 training steps"):
        target.load_state_dict(state)
    assert target._planned_steps is None
    target.load_state_dict({**state, "total_steps": 30})  # a matching one still loads


def test_the_rewind_point_checks_its_state():
    point = RewindPoint(0)
    point.load_state_dict({"state": None})
    point.load_state_dict({"state": {"w": torch.zeros(2)}})
    for bad in ({}, {"state": "abc"}, {"state": {"w": 1}}, "abc"):
        with pytest.raises(PrunerStateError, match="'state' must be None or the model's") as e:
            point.load_state_dict(bad)
        one_line(e)


def test_a_rewind_point_with_a_file_keeps_its_state_out_of_checkpoints(tmp_path):
    model = torch.nn.Linear(3, 2)
    point = RewindPoint(0, path=tmp_path / "rewind.pt")
    point._take({k: v.clone() for k, v in model.state_dict().items()})
    assert point.state_dict() == {"state": None, "file": "rewind.pt"}  # not the tensors
    back = RewindPoint(0, path=tmp_path / "rewind.pt", save=False)
    back.load_state_dict(point.state_dict())
    assert all(torch.equal(back.state[k], v) for k, v in model.state_dict().items())
    for wrong in (RewindPoint(0), RewindPoint(0, path=tmp_path / "other.pt")):
        with pytest.raises(PrunerStateError, match="pass RewindPoint") as e:
            wrong.load_state_dict({"state": None, "file": "rewind.pt"})
        one_line(e)
    (tmp_path / "rewind.pt").write_bytes(b"damaged")
    with pytest.raises(ValueError, match="rewind state") as e:
        back.load_state_dict({"state": None, "file": "rewind.pt"})
    one_line(e)
    (tmp_path / "rewind.pt").unlink()
    with pytest.raises(ValueError, match="rewind state .* not found") as e:
        back.load_state_dict({"state": None, "file": "rewind.pt"})
    one_line(e)
