"""`interspace bench` and the bench module: structure and correctness, never timings."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.cli import main
from interspace_pruning.cli.sources import load_source, peak_memory
from interspace_pruning.experiments.runfiles import read_config
from interspace_pruning.foundations.hparams import config_hash
from interspace_pruning.inference.bench import ORT_MISSING, bench, build_engines

SHAPE = (1, 8, 8)


def _pruned(rep: str = "ip", sparsity: float = 0.8, width: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ip.models.get("convnet", 10, 1, width=width)
    if rep == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", sparsity)
    return model.eval()


@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_bench_structure_and_outputs_agree(rep):
    r = bench(_pruned(rep), SHAPE, batch=3, threads=1, repeats=4, engines=("torch", "sparse"))
    assert list(r.engines) == ["torch", "sparse"]
    assert r.batch == 3 and r.threads == 1 and r.input_shape == SHAPE
    for e in r.engines.values():
        assert len(e.times_ms) == 4 and all(t > 0 for t in e.times_ms)
        assert min(e.times_ms) <= e.median_ms <= max(e.times_ms)
        assert e.max_abs_diff is not None and e.max_abs_diff < 1e-4
    assert r.speedup("torch") == pytest.approx(1.0)
    assert r.speedup("sparse") == pytest.approx(
        r.engines["torch"].median_ms / r.engines["sparse"].median_ms
    )
    assert "pruned layers sparse" in r.engines["sparse"].note
    d = json.loads(json.dumps(r.to_dict()))  # serialisable as is
    assert d["engines"]["sparse"]["speedup_vs_torch"] == pytest.approx(r.speedup("sparse"))
    assert "| sparse |" in r.markdown() and r.cpu and r.kernel


def test_cpu_clock_counts_the_calling_thread():
    r = bench(_pruned("sp"), SHAPE, batch=2, threads=1, repeats=3, engines=("torch",), clock="cpu")
    e = r.engines["torch"]
    assert r.clock == "cpu" and e.median_ms > 0 and e.wall_median_ms > 0
    assert "median cpu time" in r.markdown()
    with pytest.raises(ValueError, match="threads=1"):
        bench(_pruned("sp"), SHAPE, threads=2, clock="cpu")
    with pytest.raises(ValueError, match="clock"):
        bench(_pruned("sp"), SHAPE, clock="gpu")


def test_dense_model_skips_the_sparse_engine():
    torch.manual_seed(0)
    model = ip.models.get("convnet", 10, 1, width=4).eval()
    r = bench(model, SHAPE, batch=2, threads=1, repeats=2, engines=("torch", "sparse"))
    assert r.engines["torch"].median_ms > 0
    assert r.engines["sparse"].median_ms is None and "dense" in r.engines["sparse"].note
    assert r.speedup("sparse") is None


def test_onnxruntime_matches_torch():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    r = bench(_pruned("ip"), SHAPE, batch=2, threads=1, repeats=2, engines=("torch", "onnxruntime"))
    assert r.engines["onnxruntime"].median_ms > 0
    assert r.engines["onnxruntime"].max_abs_diff < 1e-4


def test_missing_onnxruntime_is_a_note_or_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    model, x = _pruned("sp"), torch.randn(1, *SHAPE)
    fns, notes = build_engines(model, x, ("torch", "onnxruntime"))
    assert "onnxruntime" not in fns and "not installed" in notes["onnxruntime"]
    with pytest.raises(ValueError, match="pip install"):
        build_engines(model, x, ("onnxruntime",))
    assert "\n" not in ORT_MISSING


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown engine"):
        build_engines(_pruned(), torch.randn(1, *SHAPE), ("tensorrt",))
    with pytest.raises(ValueError, match=">= 1"):
        bench(_pruned(), SHAPE, batch=0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--train-subset", "200", "--test-subset", "50", "--epochs", "1", "--quiet"]
    assert main([*args, "--representation", "ip", "--sparsity", "0.9", "--out", str(out)]) == 0
    return out


def test_cli_bench_on_a_run_directory(run_dir, tmp_path, capsys):
    out = tmp_path / "latency.json"
    args = ["bench", str(run_dir), "--batch", "1", "4", "--repeats", "3", "--threads", "1"]
    assert main([*args, "--engines", "torch", "sparse", "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.count("| torch |") == 2 and "input 1x8x8" in text  # digits: 8x8 images
    data = json.loads(out.read_text())
    assert [r["batch"] for r in data["results"]] == [1, 4]
    # whose timings: a report leaves the file out of another run's folder
    assert data["config_hash"] == config_hash(read_config(run_dir / "config.json"))
    assert all(r["engines"]["sparse"]["max_abs_diff"] < 1e-4 for r in data["results"])
    model, shape = load_source(run_dir / "model.pt")  # the file inside also works
    assert shape == (1, 8, 8) and ip.sparsity_report(model).sparsity == pytest.approx(0.9, abs=0.01)


def test_cli_bench_on_a_sparse_file(tmp_path, capsys):
    path = tmp_path / "model.isp"  # the zoo's convnet (width 32), as the file names it
    ip.export_sparse(
        _pruned("ip", width=32), path, {"name": "convnet", "num_classes": 10, "in_channels": 1}
    )
    args = ["bench", str(path), "--batch", "2", "--repeats", "2", "--engines", "torch", "sparse"]
    assert main([*args, "--input-size", "12", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "input 1x12x12" in text and "| sparse |" in text


def test_peak_memory_in_a_fresh_process(tmp_path):
    path = tmp_path / "model.isp"
    ip.export_sparse(
        _pruned("sp", width=32), path, {"name": "convnet", "num_classes": 10, "in_channels": 1}
    )
    m = peak_memory(path, "sparse", batch=2, threads=1, input_size=8)
    assert m["peak_rss_mib"] > 10  # a whole python + torch process
    assert m["runtime_rss_mib"] is None or m["runtime_rss_mib"] <= m["peak_rss_mib"] * 1.5


@pytest.mark.parametrize("kind", ["missing", "garbage", "not_a_run", "unfinished"])
def test_bad_input_is_one_line(kind, tmp_path, capsys):
    path = tmp_path / "x"
    if kind == "garbage":
        path.write_bytes(b"not a model at all")
    elif kind == "not_a_run":
        path.mkdir()
    elif kind == "unfinished":
        path.mkdir()
        (path / "config.json").write_text("{}")
    assert main(["bench", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("interspace bench: error:") and len(err.splitlines()) == 1
    assert str(path) in err
