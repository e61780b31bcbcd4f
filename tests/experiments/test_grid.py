import pytest

from interspace_pruning.experiments import RunConfig
from interspace_pruning.experiments.grid import expand, override, run_grid
from interspace_pruning.foundations.hparams import to_dict
from interspace_pruning.report import ip_vs_sp_table
from interspace_pruning.training import TrainConfig


def test_expand_deduplicates_dense_runs():
    grid = {
        "prune.method": ["snip", "random"],
        "prune.sparsity": [0.9, 0.95],
        "prune.representation": ["sp", "ip", "dense"],
    }
    cfgs = expand(RunConfig(), grid)
    assert len(cfgs) == 2 * 2 * 2 + 1


def test_override_validates():
    with pytest.raises(ValueError, match="unknown hyperparameter 'prune.sparse'"):
        override(RunConfig(), "prune.sparse", 0.9)
    with pytest.raises(ValueError, match="must look like"):
        override(RunConfig(), "sparsity", 0.9)
    with pytest.raises(ValueError, match="sparsity must be"):
        override(RunConfig(), "prune.sparsity", 2.0)


def test_run_grid_skips_finished_runs_and_tabulates(tmp_path, capsys):
    base = RunConfig(train=TrainConfig(epochs=1))
    base = override(override(base, "data.train_subset", 200), "data.test_subset", 100)
    grid = {"prune.representation": ["sp", "ip"], "prune.sparsity": [0.9], "train.seed": [0, 1]}
    cfgs = expand(base, grid)
    first = list(run_grid(cfgs, tmp_path))
    assert capsys.readouterr().out.count("->") == 4
    second = list(run_grid(cfgs, tmp_path))
    assert capsys.readouterr().out.count("->") == 0  # all skipped
    assert [s for _, s in first] == [s for _, s in second]
    table = ip_vs_sp_table(second)
    assert "| snip | 98% |" not in table and "| snip | 90% |" in table
    assert "seeds [0, 1]" in table


def test_runs_under_an_older_hash_are_adopted(tmp_path, capsys):
    import json

    from interspace_pruning.experiments.grid import run_dir

    base = override(override(RunConfig(), "data.train_subset", 100), "data.test_subset", 50)
    cfg = override(override(base, "train.epochs", 1), "prune.sparsity", 0.9)
    list(run_grid([cfg], tmp_path))
    d = run_dir(tmp_path, cfg)
    # pretend the run was written before a new hyperparameter existed: another folder name
    # and a config.json without that field
    old = tmp_path / "0123456789"
    d.rename(old)
    saved = json.loads((old / "config.json").read_text())
    del saved["data"]["workers"]
    (old / "config.json").write_text(json.dumps(saved))
    # and its summary names the run by that older hash
    summary = json.loads((old / "summary.json").read_text())
    (old / "summary.json").write_text(json.dumps({**summary, "config_hash": old.name}))
    capsys.readouterr()
    assert [s["test_acc"] for _, s in run_grid([cfg], tmp_path)]
    assert capsys.readouterr().out.count("->") == 0  # not trained again
    assert d.is_dir() and not old.exists()
    # adopted under the new hash, its summary names it so: still its result, not another's
    assert json.loads((d / "summary.json").read_text())["config_hash"] == d.name


def test_a_folder_holding_another_runs_result_is_not_adopted(tmp_path, capsys):
    """A received sweep folder: ``old-name/`` with this cell's config.json and a summary
    of a third run (config_hash neither the folder's name nor this run's). Adopted, its
    summary would be relabelled as this run's result (IP 99% in the table) and the run
    never trained; it is skipped in one line instead, and the run trains."""
    import json

    from interspace_pruning.experiments.grid import run_dir

    base = override(override(RunConfig(), "data.train_subset", 100), "data.test_subset", 50)
    cfg = override(override(base, "train.epochs", 1), "prune.sparsity", 0.9)
    received = tmp_path / "old-name"
    received.mkdir()
    (received / "config.json").write_text(json.dumps(to_dict(cfg)))
    forged = {"test_acc": 0.99, "config_hash": "0123456789"}
    (received / "summary.json").write_text(json.dumps(forged))
    capsys.readouterr()
    ((_, summary),) = list(run_grid([cfg], tmp_path))
    out, err = capsys.readouterr()
    assert summary["test_acc"] != 0.99 and out.count("->") == 1  # trained, not adopted
    assert "skipped " in err and "is the result of another run" in err
    assert json.loads((received / "summary.json").read_text()) == forged  # left as it was
    assert run_dir(tmp_path, cfg).is_dir()
