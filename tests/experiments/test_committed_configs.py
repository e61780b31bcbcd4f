"""Committed runs keep their folder names: every ``config.json`` under ``docs/results`` (and
the files of older versions in general) reads back to the configuration and hash it was
written with, whatever the code's current layout of options and representation."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.experiments.config import config_from_dict
from interspace_pruning.experiments.runfiles import read_config
from interspace_pruning.foundations.hparams import config_hash, to_dict

ROOT = Path(__file__).parents[2]
CONFIGS = sorted((ROOT / "docs" / "results").rglob("config.json"))

#: ``config.json`` of ``RunConfig()`` as the code before issue 26 wrote it (flat
#: representation keys, fixed gmp/dst/imp sections with GMP every 50 and SET/RigL every 100).
V1_DEFAULT = {
    "data": {"dataset": "digits", "root": None, "download": False, "train_subset": None,
             "test_subset": None, "augment": True, "image_size": None, "workers": 4},
    "model": {"model": "convnet", "model_args": [], "init_from": None},
    "prune": {"representation": "ip", "method": "snip", "sparsity": 0.98, "allocation": None,
              "criterion": "magnitude", "basis": "dct", "share": "layer",
              "trainable_basis": True, "normalize_basis": True, "keep_first_dense": False,
              "keep_last_dense": False, "min_density": None, "prune_batches": 10,
              "rounds": None, "pattern": None},
    "train": {"epochs": 30, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
              "nesterov": False, "weight_decay": 0.0005, "basis_weight_decay": 0.0,
              "basis_lr_mult": 1.0, "schedule": "cosine", "step_gamma": 0.1,
              "step_milestones": "0.5,0.75", "warmup_epochs": 0.0, "label_smoothing": 0.0,
              "seed": 0, "device": "auto", "precision": "fp32", "channels_last": "auto",
              "compile": False, "sync_bn": False},
    "imp": {"imp_rounds": None, "imp_rate": 0.2, "rewind_step": 0},
    "gmp": {"gmp_initial_sparsity": 0.0, "gmp_start": 0.1, "gmp_end": 0.75, "gmp_interval": 50},
    "dst": {"dst_interval": 100, "dst_drop_fraction": 0.3, "dst_stop": 0.75},
}  # fmt: skip

#: Changes to V1_DEFAULT and the hash the code before issue 26 gave each (canonical) run.
V1_RUNS = {
    "default": ({}, "e6518f2a3f"),
    "sp-gmp": (
        {"prune": {"representation": "sp", "method": "gmp", "sparsity": 0.95}},
        "dcaf13933d",
    ),
    "ip-rigl-every-20": (
        {
            "prune": {"method": "rigl", "sparsity": 0.9},
            "dst": {"dst_interval": 20, "dst_stop": 0.5},
        },
        "6ab818b7b2",
    ),
    "ip-imp-pca": (
        {
            "prune": {
                "method": "imp",
                "sparsity": 0.9,
                "basis": "pca",
                "share": "network",
                "normalize_basis": False,
            },
            "imp": {"imp_rounds": 2, "rewind_step": 50},
        },
        "9e2599bc41",
    ),  # fmt: skip
    "dense": ({"prune": {"representation": "dense"}}, "c10eef3e9c"),
}


def _v1_file(changes: dict) -> dict:
    d = copy.deepcopy(V1_DEFAULT)
    for section, values in changes.items():
        d[section].update(values)
    return d


@pytest.mark.parametrize("name", sorted(V1_RUNS))
def test_files_of_the_first_layout_keep_their_hash(name, tmp_path):
    changes, expected = V1_RUNS[name]
    path = tmp_path / expected / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_v1_file(changes)))
    cfg = read_config(path)
    assert config_hash(cfg) == expected
    assert config_hash(config_from_dict(_v1_file(changes))) == expected


def test_the_old_defaults_are_explicit_options_now():
    old_gmp = RunConfig(
        prune=PruneConfig(representation="sp", method="gmp", sparsity=0.95),
        options={"gmp": {"interval": 50}},
    )
    assert config_hash(old_gmp) == V1_RUNS["sp-gmp"][1]  # GMP every 50 steps, as it ran
    new_gmp = old_gmp.with_options("gmp", interval=None)  # about ten pruning steps: a new run
    assert config_hash(new_gmp) != V1_RUNS["sp-gmp"][1]
    assert config_hash(RunConfig()) == V1_RUNS["default"][1]  # snip: no schedule options


def test_evaluating_less_often_keeps_a_run_its_identity():
    cfg = RunConfig()
    sparse = config_from_dict({**to_dict(cfg), "train": {**to_dict(cfg)["train"], "eval_every": 5}})
    assert sparse.train.eval_every == 5
    assert config_hash(sparse) == config_hash(cfg) == V1_RUNS["default"][1]


def test_there_are_committed_runs():
    assert len(CONFIGS) >= 183


def test_every_committed_run_keeps_its_folder_name_and_its_file():
    wrong = []
    for path in CONFIGS:
        cfg = read_config(path)
        if config_hash(cfg) != path.parent.name:
            wrong.append(str(path.relative_to(ROOT)))
            continue
        written = json.loads(json.dumps(to_dict(cfg)))  # what the code writes now
        for section, values in json.loads(path.read_text()).items():
            assert {k: written[section][k] for k in values} == values, (path, section)
        assert config_from_dict(written) == cfg
    assert not wrong, f"{len(wrong)} committed runs would get other folder names: {wrong[:3]}"


def test_the_cifar10_recipe_still_names_every_committed_run():
    """The recipe continues the committed table rather than training it again."""
    script = ROOT / "recipes" / "cifar10_resnet20_cpu.py"
    spec = importlib.util.spec_from_file_location("cifar10_cpu_recipe_names", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = Path("docs/results/cifar10_resnet20_cpu/runs")
    names = {config_hash(c) for c in module.ordered_configs(module.RECIPE, out)}
    committed = {p.parent.name for p in (ROOT / out).glob("*/config.json")}
    assert committed and committed <= names, sorted(committed - names)[:3]
