from pathlib import Path

import pytest
import yaml

from interspace_pruning.campaign import load_queue
from interspace_pruning.experiments.sweep import load_sweep

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def is_queue(path: Path) -> bool:
    return "queue" in (yaml.safe_load(path.read_text()) or {})


def test_there_are_recipes():
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid(path):
    if is_queue(path):  # a campaign's queue: every recipe it names loads, runs listed once
        queue = load_queue(path)
        dirs = [r.dir for r in queue.runs]
        assert dirs and len(dirs) == len(set(dirs))
        return
    sweep = load_sweep(path)
    assert sweep.configs
    reps = {c.prune.representation.kind for c in sweep.configs}
    if len({c.train.precision for c in sweep.configs}) > 1:
        assert {"ip", "dense"} <= reps  # a precision check: the same runs in two precisions
        return
    if reps == {"dense"}:  # a dense anchor (beside published numbers), no comparison
        assert "anchor" in path.read_text()
        return
    assert {"sp", "ip", "dense"} <= reps  # every other recipe compares IP with SP and dense
