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
    if p.representation.is_dense:
        return ("dense", 0.0, False, "dense")
    return (p.method, p.sparsity, bool(cfg.model.init_from), p.representation.kind)


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
            assert c.model.init_from in dense_dirs and c.prune.representation.basis == "pca"
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


class FakeTrainer:
    """Stands in for ``run``: writes what a finished run leaves, fails where told to."""

    def __init__(self, root: Path, fail=()) -> None:
        self.root, self.fail, self.trained = root, [config_hash(c) for c in fail], []

    def __call__(self, cfg, d, progress, resume):
        from interspace_pruning.foundations.claims import CLAIM

        if d.parent == self.root:  # a table run (not a scratch re-training)
            assert (d / CLAIM).is_file()  # the worker holds the run folder's claim
        if config_hash(cfg) in self.fail:
            raise RuntimeError("loss is NaN")
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(to_dict(cfg)))
        (d / "model.pt").write_bytes(b"")
        (d / "summary.json").write_text('{"test_acc": 0.5}')
        self.trained.append(cfg)
        return type("Result", (), {"summary": {"test_acc": 0.5}})()


@pytest.fixture()
def table(recipe, tmp_path, monkeypatch):
    """The table's runs in tmp_path, trained by a fake that never waits."""

    def no_waiting(seconds):
        raise AssertionError("a worker waited although no other process trains anything")

    monkeypatch.setattr(recipe.time, "sleep", no_waiting)
    monkeypatch.setattr(recipe, "SCRATCH", tmp_path / "scratch")
    return recipe.ordered_configs(recipe.RECIPE, tmp_path)


def _dense_of(cfg, order, root):
    return next(c for c in order if str(run_dir(root, c)) == cfg.model.init_from)


def test_shards_share_the_table_through_run_folder_claims(recipe, table, tmp_path, monkeypatch):
    """Runs another live process holds are left to it; each other run is trained once, and a
    shard trains the dense runs its fine-tuning runs need (no waiting on other shards)."""
    from interspace_pruning.foundations.claims import CLAIM

    fake = FakeTrainer(tmp_path)
    monkeypatch.setattr(recipe, "run", fake)
    order = table
    held = order[6]  # a sparse run: nothing waits on it
    assert held.prune.sparsity > 0 and not held.model.init_from
    elsewhere = run_dir(tmp_path, held)
    elsewhere.mkdir(parents=True)
    (elsewhere / CLAIM).write_text('{"host": "another-machine", "pid": 1, "token": "x"}')

    halves = [recipe.shard_configs(order, i, 2) for i in (1, 2)]
    assert sorted(map(config_hash, halves[0] + halves[1])) == sorted(map(config_hash, order))
    recipe.work(0, halves[1], tmp_path, commit=False, order=order)  # shard 2 first, alone
    extra = [c for c in fake.trained if c not in halves[1]]
    assert extra and all(c.prune.representation.is_dense for c in extra)
    recipe.work(1, halves[0], tmp_path, commit=False, order=order)  # the rest, but not `held`
    assert len(fake.trained) == len(order) - 1 and held not in fake.trained
    assert len({config_hash(c) for c in fake.trained}) == len(fake.trained)  # each once
    assert not (elsewhere / "summary.json").exists() and (elsewhere / CLAIM).is_file()
    for i, cfg in enumerate(fake.trained):
        if cfg.model.init_from:
            assert _dense_of(cfg, order, tmp_path) in fake.trained[:i]


def test_a_failed_dense_run_drops_its_fine_tuning_runs(recipe, table, tmp_path, monkeypatch):
    dense = table[0]
    fake = FakeTrainer(tmp_path, fail=[dense])
    monkeypatch.setattr(recipe, "run", fake)
    recipe.work(0, table, tmp_path, commit=False)
    dropped = [c for c in table if c.model.init_from == str(run_dir(tmp_path, dense))]
    assert dropped and not set(map(config_hash, dropped)) & set(map(config_hash, fake.trained))
    assert len(fake.trained) == len(table) - 1 - len(dropped)


def test_a_missing_dense_model_is_re_trained_once(recipe, table, tmp_path, monkeypatch):
    """A fresh clone has the dense runs' small files but not their model.pt."""
    from interspace_pruning.foundations.claims import CLAIM

    fake = FakeTrainer(tmp_path)
    monkeypatch.setattr(recipe, "run", fake)
    dense_dir = run_dir(tmp_path, table[0])
    recipe.work(0, table[:1], tmp_path, commit=False)
    (dense_dir / "model.pt").unlink()
    assert recipe.restore_dense_model(dense_dir, tmp_path / "scratch")
    assert recipe.restore_dense_model(dense_dir, tmp_path / "scratch")  # present: no training
    assert [config_hash(c) for c in fake.trained] == [config_hash(table[0])] * 2
    assert (dense_dir / "model.pt").is_file() and not (dense_dir / CLAIM).exists()
    restored = json.loads((dense_dir / "model_restored.json").read_text())
    assert restored["test_acc_retrained"] == restored["test_acc_committed"] == 0.5
    assert not any((tmp_path / "scratch").iterdir())  # the scratch run is gone


def test_dry_run_lists_one_shard_in_the_table_order(recipe, capsys):
    recipe.main(["--dry-run", "--shard", "2/3"])
    numbers = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()]
    # 183 runs: the 174 of the table and 9 parameter-matched SP controls (issue 25)
    assert numbers[:3] == [2, 5, 8] and len(numbers) == 61


def test_runs_selects_a_range_of_the_table_order(recipe, capsys):
    recipe.main(["--dry-run", "--runs", "103-105,170"])
    numbers = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()]
    assert numbers == [103, 104, 105, 170]
    recipe.main(["--dry-run", "--runs", "1-6", "--shard", "2/2"])
    numbers = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()]
    assert numbers == [2, 4, 6]
    for bad in ("0-3", "5-2", "x", "180-184"):  # 183 runs in all
        with pytest.raises(SystemExit):
            recipe.main(["--dry-run", "--runs", bad])
    assert "--runs" in capsys.readouterr().err


def test_git_commit_takes_only_finished_runs_small_files(recipe, tmp_path, monkeypatch, capsys):
    import subprocess

    monkeypatch.chdir(tmp_path)
    # this machine's git settings stay out (signing, hooks, an enclosing repository)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
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
