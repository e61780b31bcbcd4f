"""The CIFAR-10 CPU table's run list: complete cells, in priority order."""

import importlib.util
from collections import defaultdict
from pathlib import Path

import pytest

from interspace_pruning.experiments.grid import run_dir
from interspace_pruning.foundations.hparams import config_hash

SCRIPT = Path(__file__).parents[2] / "recipes" / "cifar10_resnet20_cpu.py"
OUT = Path("docs/results/cifar10_resnet20_cpu/runs")


@pytest.fixture(scope="module")
def configs():
    spec = importlib.util.spec_from_file_location("cifar10_cpu_recipe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ordered_configs(module.RECIPE, OUT)


def _cell(cfg):
    p = cfg.prune
    if p.representation == "dense":
        return ("dense", 0.0, False, "dense")
    return (p.method, p.sparsity, bool(cfg.model.init_from), p.representation)


def test_every_cell_has_three_seeds_and_runs_are_unique(configs):
    assert len({config_hash(c) for c in configs}) == len(configs)
    seeds = defaultdict(set)
    for c in configs:
        seeds[_cell(c)].add(c.train.seed)
    assert all(s == {0, 1, 2} for s in seeds.values()), seeds
    for method in ("snip", "grasp", "synflow", "random", "magnitude", "rigl", "set", "gmp"):
        for sparsity in (0.95, 0.98):
            for rep in ("sp", "ip"):
                assert (method, sparsity, False, rep) in seeds, (method, sparsity, rep)
    for rep in ("sp", "ip"):
        assert ("imp", 0.95, False, rep) in seeds
        for sparsity in (0.95, 0.98):
            assert ("magnitude", sparsity, True, rep) in seeds  # trained + fine-tune
    assert ("dense", 0.0, False, "dense") in seeds and ("random", 0.0, False, "ip") in seeds


def test_priority_order_and_fine_tuning_from_the_dense_runs(configs):
    assert [_cell(c)[3] for c in configs[:6]] == ["dense"] * 3 + ["ip"] * 3
    assert all(c.prune.sparsity == 0 for c in configs[3:6])
    dense_dirs = {str(run_dir(OUT, c)) for c in configs[:3]}
    first_90 = min(i for i, c in enumerate(configs) if c.prune.sparsity == 0.9)
    assert all(c.prune.sparsity != 0.9 for c in configs[:first_90])
    for c in configs:
        if c.model.init_from:
            assert c.model.init_from in dense_dirs and c.prune.basis == "pca"
            assert c.train.epochs < configs[0].train.epochs and c.train.warmup_epochs == 0
        if c.prune.method == "magnitude" and not c.model.init_from:
            assert c.prune.allocation == "erk"  # no layer collapse at initialisation
    first_ft = min(i for i, c in enumerate(configs) if c.model.init_from)
    assert 6 < first_ft < first_90
