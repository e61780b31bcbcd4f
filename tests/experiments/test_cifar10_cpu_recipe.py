"""The CIFAR-10 CPU table's run list: complete cells, in priority order."""

import importlib.util
import json
from collections import defaultdict
from pathlib import Path

import pytest

from interspace_pruning.experiments.grid import run_dir
from interspace_pruning.foundations.hparams import config_hash, to_dict

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


@pytest.fixture()
def recipe():
    spec = importlib.util.spec_from_file_location("cifar10_cpu_recipe_work", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workers_share_the_table_through_run_folder_claims(recipe, tmp_path, monkeypatch):
    """Runs another live process holds are left to it; the rest are trained once, fine-tuning
    runs after their dense run, and shards split the order disjointly."""
    from interspace_pruning.foundations.claims import CLAIM

    trained = []

    def fake_run(cfg, d, progress, resume):
        if d.parent == tmp_path:  # a table run (not a scratch re-training)
            assert (d / CLAIM).is_file()  # the worker holds the run folder's claim
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(to_dict(cfg)))
        trained.append(cfg)
        (d / "model.pt").write_bytes(b"")
        (d / "summary.json").write_text('{"test_acc": 0.5}')
        return type("Result", (), {"summary": {"test_acc": 0.5}})()

    def no_waiting(seconds):
        raise AssertionError("a worker waited although every dense run could be trained")

    monkeypatch.setattr(recipe, "run", fake_run)
    monkeypatch.setattr(recipe.time, "sleep", no_waiting)
    order = recipe.ordered_configs(recipe.RECIPE, tmp_path)
    held = order[6]  # a sparse run: nothing waits on it
    assert held.prune.sparsity > 0 and not held.model.init_from
    elsewhere = run_dir(tmp_path, held)
    elsewhere.mkdir(parents=True)
    (elsewhere / CLAIM).write_text('{"host": "another-machine", "pid": 1, "token": "x"}')

    halves = [recipe.shard_configs(order, i, 2) for i in (1, 2)]
    assert sorted(map(config_hash, halves[0] + halves[1])) == sorted(map(config_hash, order))
    recipe.work(0, order[:3], tmp_path, commit=False, order=order)  # the dense runs
    recipe.work(0, halves[1], tmp_path, commit=False, order=order)
    assert trained == order[:3] + [c for c in halves[1] if c not in order[:3]]
    recipe.work(1, halves[0], tmp_path, commit=False, order=order)  # the rest, but not `held`
    assert len(trained) == len(order) - 1 and held not in trained
    assert not (elsewhere / "summary.json").exists() and (elsewhere / CLAIM).is_file()
    for i, cfg in enumerate(trained):
        if cfg.model.init_from:  # its dense run was trained before it
            dense = next(c for c in order if str(run_dir(tmp_path, c)) == cfg.model.init_from)
            assert dense in trained[:i]

    # a fresh clone has the dense runs' small files but not their model.pt: re-trained once
    dense_dir = run_dir(tmp_path, order[0])
    (dense_dir / "model.pt").unlink()
    finetune = next(c for c in order if c.model.init_from == str(dense_dir))
    assert recipe.ready(finetune)
    assert (dense_dir / "model.pt").is_file() and not (dense_dir / CLAIM).exists()
    restored = json.loads((dense_dir / "model_restored.json").read_text())
    assert restored["test_acc_retrained"] == restored["test_acc_committed"] == 0.5
    assert trained[-1] == order[0]


def test_dry_run_lists_one_shard_in_the_table_order(recipe, capsys):
    recipe.main(["--dry-run", "--shard", "2/3"])
    numbers = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()]
    assert numbers[:3] == [2, 5, 8] and len(numbers) == 58


def test_git_commit_takes_only_finished_runs_small_files(recipe, tmp_path, monkeypatch, capsys):
    import subprocess

    monkeypatch.chdir(tmp_path)
    out = Path("runs")
    for name, files in (
        ("done", ("summary.json", "metrics.jsonl", "checkpoint.pt")),
        ("running", ("config.json", "checkpoint.pt")),
    ):
        (out / name).mkdir(parents=True)
        for f in files:
            (out / name / f).write_text("{}")
    recipe.git_commit(out, "not a repository yet")
    assert "git failed" in capsys.readouterr().out
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@t")
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "root"], check=True)
    recipe.git_commit(out, "one run")
    listed = subprocess.run(
        ["git", "show", "--name-only", "--format=%s"], capture_output=True, text=True
    ).stdout.split()
    assert listed == ["one", "run", "runs/done/metrics.jsonl", "runs/done/summary.json"]
