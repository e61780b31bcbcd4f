"""``keep_models``: a queue entry whose pruned runs leave their trained model in git as a
compact sparse file, which a clone without ``model.pt`` loads, benches and reports from."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

from interspace_pruning.campaign import CampaignOptions, gitsync, load_queue, run_campaign
from interspace_pruning.campaign.gitsync import commit_run
from interspace_pruning.cli.sources import load_source
from interspace_pruning.experiments.results import finished_model
from interspace_pruning.experiments.runfiles import MODEL, SPARSE_MODEL, read_config

from .test_campaign import RECIPE, git, git_repo


def _finished(run_dir):
    return finished_model(
        read_config(run_dir / "config.json"),
        run_dir,
        json.loads((run_dir / "summary.json").read_text()),
    )


def test_kept_models_are_committed_and_load_in_a_clone_without_model_pt(tmp_path, monkeypatch):
    first = tmp_path / "machine1"
    first.mkdir()
    (first / "digits.yaml").write_text(RECIPE.format(epochs=1))
    (first / "q.yaml").write_text(
        "name: t\nqueue:\n  - recipe: digits.yaml\n"
        "    only: {train.precision: [fp32]}\n    keep_models: true\n"
    )
    git_repo(first)
    monkeypatch.chdir(first)
    q = load_queue(first / "q.yaml")
    assert len(q.runs) == 5 and all(r.keep_model for r in q.runs)
    run_campaign(q, CampaignOptions(deadline=time.time() + 600, workers=1, margin=1.0))
    kind = {(r.cfg.prune.representation.kind, r.cfg.train.seed): r for r in q.runs}
    sp, ip, sp1, dense = kind["sp", 0], kind["ip", 0], kind["sp", 1], kind["dense", 0]
    tracked = git("ls-files", cwd=first).split()
    for r in (sp, ip):
        assert f"{r.dir.as_posix()}/{SPARSE_MODEL}" in tracked
    assert not (dense.dir / SPARSE_MODEL).exists()  # nothing sparse to keep
    assert not any(name.endswith(MODEL) for name in tracked)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        before = {r.dir: _finished(first / r.dir)(x) for r in (sp, ip)}

    second = tmp_path / "machine2"
    git("clone", "-q", str(first), str(second), cwd=tmp_path)
    for r in (sp, ip):
        folder = second / r.dir
        assert not (folder / MODEL).exists()
        with torch.no_grad():
            assert torch.equal(_finished(folder)(x), before[r.dir])
        model, shape = load_source(folder)  # what `interspace bench RUN` loads
        assert shape == (1, 8, 8) and model is not None
    # another run's file in this run's folder is refused: another seed, another representation
    shutil.copy(second / sp1.dir / SPARSE_MODEL, second / sp.dir / SPARSE_MODEL)
    with pytest.raises(ValueError, match="exported from another run"):
        _finished(second / sp.dir)
    shutil.copy(second / sp1.dir / SPARSE_MODEL, second / ip.dir / SPARSE_MODEL)
    with pytest.raises(ValueError, match="holds an sp model"):
        _finished(second / ip.dir)
    with pytest.raises(ValueError, match="has no model.pt \\(nor model.isp\\)"):
        load_source(second / dense.dir)


def test_keep_models_must_be_a_boolean(tmp_path):
    (tmp_path / "digits.yaml").write_text(RECIPE.format(epochs=1))
    (tmp_path / "q.yaml").write_text(
        "name: t\nqueue:\n  - recipe: digits.yaml\n    keep_models: yes please\n"
    )
    with pytest.raises(ValueError, match="'keep_models' must be true or false"):
        load_queue(tmp_path / "q.yaml")


def test_a_sparse_model_too_large_for_git_stays_on_disk(tmp_path, monkeypatch, capsys):
    git_repo(tmp_path)
    d = tmp_path / "out" / "big"
    d.mkdir(parents=True)
    (d / "summary.json").write_text("{}")
    (d / SPARSE_MODEL).write_bytes(b"z" * 2048)
    monkeypatch.setattr(gitsync, "MAX_GIT_FILE", 1024)
    assert commit_run(d, "finished")
    assert "not committed, it stays on disk" in capsys.readouterr().out
    assert git("ls-files", "out", cwd=tmp_path).split() == ["out/big/summary.json"]
