from pathlib import Path

import pytest

from interspace_pruning.experiments.sweep import load_sweep

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid(path):
    sweep = load_sweep(path)
    assert sweep.configs
    reps = {c.prune.representation.kind for c in sweep.configs}
    assert {"sp", "ip", "dense"} <= reps  # every recipe compares IP with SP and dense
