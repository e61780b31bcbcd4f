"""Accuracy vs latency: the matched-accuracy statement on numbers the test chose."""

from __future__ import annotations

import json

import pytest

from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.foundations.hparams import config_hash, to_dict
from interspace_pruning.report import collect_runs, write_report
from interspace_pruning.report.pareto import (
    Point,
    latency_results,
    matched,
    points,
    statements,
    timed_runs,
    write_pareto,
)
from interspace_pruning.training import TrainConfig


def _p(rep, sparsity, acc, ms, method="snip"):
    return Point(method, rep, sparsity, acc, 0.0, ms, None, None, 1)


#: SP 90%: 80% in 10 ms, SP 95%: 75% in 8 ms. IP is faster where it is less accurate.
PTS = [
    _p("sp", 0.90, 0.80, 10.0),
    _p("sp", 0.95, 0.75, 8.0),
    _p("ip", 0.90, 0.83, 12.0),
    _p("ip", 0.95, 0.80, 9.0),  # exactly SP-90's accuracy: a match
    _p("ip", 0.98, 0.79, 5.0),
    _p("ip", 0.99, 0.70, 3.0),  # the fastest, but matches neither
    _p("dense", 0.0, 0.85, 20.0, method="dense"),
]


def test_fastest_matching_ip_model():
    m90 = matched(PTS, "snip", 0.90)
    assert (m90.ip.sparsity, m90.speedup) == (0.95, pytest.approx(10.0 / 9.0))
    m95 = matched(PTS, "snip", 0.95)
    assert (m95.ip.sparsity, m95.speedup) == (0.98, pytest.approx(8.0 / 5.0))
    assert "IP at 98%" in m95.sentence() and "speed-up over that SP model: 1.60x." in m95.sentence()
    assert matched(PTS, "snip", 0.98) is None  # no SP point there
    assert matched(PTS, "synflow", 0.90) is None


def test_no_ip_model_matches():
    pts = [_p("sp", 0.9, 0.9, 10.0), _p("ip", 0.9, 0.89, 1.0)]
    m = matched(pts, "snip", 0.9)
    assert m.ip is None and m.speedup is None and "no IP model" in m.sentence()
    slower = matched([_p("sp", 0.9, 0.9, 1.0), _p("ip", 0.95, 0.9, 2.0)], "snip", 0.9)
    assert slower.speedup == 0.5 and "0.50x (IP is slower)" in slower.sentence()
    assert len(statements(pts)) == 1


def test_times_are_relative_to_torch_in_the_same_rounds():
    from interspace_pruning.report.pareto import Timed

    runs = [  # the machine was twice as slow while the IP run was timed
        Timed("convnet", "dense", "dense", 0.0, 0, 0.9, {"torch": 10.0, "onnxruntime": 5.0}),
        Timed("convnet", "snip", "sp", 0.9, 0, 0.8, {"torch": 10.0, "sparse": 8.0}),
        Timed("convnet", "snip", "ip", 0.95, 0, 0.8, {"torch": 20.0, "sparse": 12.0}),
    ]
    pts = {p.representation: p for p in points(runs)}
    assert pts["ip"].ms == pytest.approx(6.0) and pts["sp"].ms == pytest.approx(8.0)
    assert pts["dense"].ms == 10.0 and pts["dense"].ort_ms == 5.0
    assert matched(list(pts.values()), "snip", 0.9).speedup == pytest.approx(8.0 / 6.0)


def test_one_slow_reference_engine_is_not_taken_for_a_drift():
    from interspace_pruning.report.pareto import Timed

    both = {"torch": 10.0, "onnxruntime": 5.0}
    runs = [
        Timed("convnet", "dense", "dense", 0.0, 0, 0.9, dict(both)),
        Timed("convnet", "dense", "dense", 0.0, 1, 0.9, dict(both)),
        Timed("convnet", "snip", "sp", 0.9, 0, 0.8, {**both, "sparse": 8.0}),
        # torch dense alone ran slow for this model; ONNX Runtime says no drift
        Timed("convnet", "snip", "ip", 0.95, 0, 0.8, {**both, "torch": 15.0, "sparse": 9.0}),
        # a real drift: both references twice as slow
        Timed(
            "convnet",
            "snip",
            "ip",
            0.98,
            0,
            0.7,
            {"torch": 20.0, "onnxruntime": 10.0, "sparse": 12.0},
        ),
    ]
    pts = {(p.representation, p.sparsity): p for p in points(runs)}
    assert pts["ip", 0.95].ms == pytest.approx(9.0)
    assert pts["ip", 0.98].ms == pytest.approx(6.0)


def _run(root, name, rep, sparsity, seed, acc, ms: dict[int, dict[str, float]] | None, threads=1):
    d = root / name
    d.mkdir(parents=True)
    cfg = RunConfig(
        prune=PruneConfig(representation=rep, method="snip", sparsity=sparsity),
        train=TrainConfig(epochs=2, seed=seed),
    )
    (d / "config.json").write_text(json.dumps(to_dict(cfg)))
    (d / "summary.json").write_text(json.dumps({"test_acc": acc, "wall_time": 1.0}))
    rows = [{"epoch": e + 1, "train_loss": 1.0, "test_acc": acc} for e in range(2)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if ms is not None:
        results = [
            {
                "batch": b,
                "cpu": "test cpu",
                "kernel": "test",
                "threads": threads,
                "repeats": 3,
                "engines": {k: {"median_ms": v, "note": "auto: 3/5 sparse"} for k, v in e.items()},
            }
            for b, e in ms.items()
        ]
        (d / "latency.json").write_text(json.dumps({"results": results}))


@pytest.fixture
def timed_sweep(tmp_path):
    root = tmp_path / "sweep"
    # two seeds of SP 90% (mean 80%, median 10 ms); IP 98% reaches 81% in 4 ms
    _run(root, "sp0", "sp", 0.9, 0, 0.78, {32: {"sparse": 9.0, "torch": 20.0}, 1: {"sparse": 1.0}})
    _run(root, "sp1", "sp", 0.9, 1, 0.82, {32: {"sparse": 11.0, "torch": 20.0}, 1: {"sparse": 1.0}})
    _run(root, "ip0", "ip", 0.98, 0, 0.81, {32: {"sparse": 4.0, "torch": 20.0}, 1: {"sparse": 2.0}})
    _run(root, "ip1", "ip", 0.90, 0, 0.85, {32: {"sparse": 8.0}, 1: {"sparse": 0.5}})
    _run(
        root,
        "dense",
        "dense",
        0.0,
        0,
        0.86,
        {32: {"torch": 20.0, "onnxruntime": 5.0}, 1: {"torch": 1.5, "onnxruntime": 0.2}},
    )
    _run(root, "untimed", "ip", 0.95, 0, 0.99, None)  # no latency.json: not in the plot
    return root


def test_points_aggregate_seeds_and_skip_untimed_runs(timed_sweep):
    records, _ = collect_runs(timed_sweep)
    runs = timed_runs(records, 32)
    assert len(runs) == 5
    pts = {(p.representation, p.sparsity): p for p in points(runs)}
    sp = pts[("sp", 0.9)]
    assert sp.acc == pytest.approx(0.80) and sp.ms == pytest.approx(10.0) and sp.seeds == 2
    assert pts[("dense", 0.0)].ms == 20.0 and pts[("dense", 0.0)].ort_ms == 5.0
    m = matched(list(pts.values()), "snip", 0.9)
    assert m.ip.sparsity == 0.98 and m.speedup == pytest.approx(2.5)
    # at batch 1 the ranking changes: IP 90% (0.5 ms) is the fastest match
    m1 = matched(points(timed_runs(records, 1)), "snip", 0.9)
    assert m1.ip.sparsity == 0.9 and m1.speedup == pytest.approx(2.0)


def test_report_draws_the_plot_when_timings_exist(timed_sweep, tmp_path):
    text = write_report(timed_sweep).read_text()
    assert "accuracy vs CPU latency (batch 32)" in text
    assert "IP at 98%" in text and "speed-up over that SP model: 2.50x" in text
    assert "| 3/5 sparse |" in text  # the sparse engine's plan is shown
    assert (timed_sweep / "report" / "digits_convnet_accuracy_latency_b32.png").is_file()
    md = write_pareto(collect_runs(timed_sweep)[0], tmp_path / "docs", batch=1)
    assert (
        "batch 1" in md and (tmp_path / "docs" / "digits_convnet_accuracy_latency_b1.png").is_file()
    )


def test_report_without_timings_has_no_pareto_section(timed_sweep):
    for p in timed_sweep.glob("*/latency.json"):
        p.unlink()
    assert "accuracy vs CPU latency" not in write_report(timed_sweep).read_text()
    with pytest.raises(ValueError, match="interspace bench"):
        write_pareto(collect_runs(timed_sweep)[0], timed_sweep / "docs")


def test_runs_timed_in_other_ways_are_never_compared(tmp_path):
    """SP timed on 1 thread, IP on 2: each setting gets its own section, no speed-up
    between them, and each names its own thread count."""
    root = tmp_path / "sweep"
    _run(root, "sp0", "sp", 0.9, 0, 0.80, {32: {"sparse": 10.0, "torch": 20.0}})
    _run(root, "ip0", "ip", 0.98, 0, 0.81, {32: {"sparse": 4.0, "torch": 10.0}}, threads=2)
    md = write_pareto(collect_runs(root)[0], tmp_path / "docs")
    assert "timed in 2 ways" in md and "speed-up over that SP model" not in md
    assert "1 threads, wall clock" in md and "2 threads, wall clock" in md
    assert "threads: 1," in md and "threads: 2," in md


def test_a_report_reads_each_latency_file_once_and_again_when_it_changes(
    timed_sweep, tmp_path, monkeypatch
):
    from interspace_pruning.report import pareto

    pareto._checked_latency.cache_clear()
    reads: list[str] = []
    real = pareto.read_json
    monkeypatch.setattr(
        pareto, "read_json", lambda p, *a: reads.append(p.parent.name) or real(p, *a)
    )
    write_pareto(collect_runs(timed_sweep)[0], tmp_path / "docs")
    assert sorted(reads) == ["dense", "ip0", "ip1", "sp0", "sp1"]
    # a file rewritten (bench run again) is read again, and its new timings are used
    _write = timed_sweep / "sp0" / "latency.json"
    data = json.loads(_write.read_text())
    data["results"][0]["engines"]["sparse"]["median_ms"] = 99.0
    _write.write_text(json.dumps(data, indent=1))
    reads.clear()
    runs = timed_runs(collect_runs(timed_sweep)[0], 32)
    assert reads == ["sp0"]
    assert next(r for r in runs if r.seed == 0 and r.representation == "sp").ms["sparse"] == 99.0


def test_timings_of_another_run_are_left_out_and_named(timed_sweep, tmp_path, capsys):
    """A ``latency.json`` copied into another run's folder must not make that model's speed
    this run's: the file names its run (``config_hash``; in older files the run folder that
    ends ``source``), and a file of another run is left out, with a ⚠ line."""
    records, _ = collect_runs(timed_sweep)
    ip0 = next(r for r in records if r.path.name == "ip0")
    own = config_hash(ip0.config)
    path = ip0.path / "latency.json"
    data = json.loads(path.read_text())
    for head, kept in [
        ({"config_hash": own}, True),
        ({"source": f"runs/x/{own}"}, True),
        ({"source": "runs/x/my-run"}, True),  # not a run folder's name: cannot tell
        ({"config_hash": "0123456789"}, False),
        ({"source": "runs/fmnist-latency/652f4a6007"}, False),
    ]:
        path.write_text(json.dumps({**head, "results": data["results"]}))
        md = write_pareto(collect_runs(timed_sweep)[0], tmp_path / "docs")
        assert ("IP at 98%" in md) == kept, head
        assert ("left out of the timings: ip0/latency.json" in md) != kept, head
        assert ("left out ip0/latency.json" in capsys.readouterr().err) != kept


def test_a_latency_file_of_more_entries_than_batch_sizes_is_not_read(timed_sweep, tmp_path):
    """The parsed files stay cached for the whole process: a file of thousands of entries
    (not one bench wrote) is treated as having no timings, and what is kept of an entry is
    only what the report uses."""
    path = timed_sweep / "ip0" / "latency.json"
    data = json.loads(path.read_text())
    entry = {**data["results"][0], "padding": "x" * 10_000}
    path.write_text(json.dumps({"results": [entry]}))
    (kept,) = latency_results(path)
    assert "padding" not in kept and kept["engines"]["sparse"]["median_ms"] == 4.0
    path.write_text(json.dumps({"results": [entry] * 65}))
    assert latency_results(path) == []


def test_the_latency_recipe_writes_whose_timings_they_are(tmp_path):
    """``recipes/fashion_mnist_latency.py --stage bench`` names the run in each
    ``latency.json`` it writes (``config_hash``), as ``interspace bench`` does: the report
    can then tell the file from one copied in from another run."""
    import argparse
    import importlib.util
    from pathlib import Path

    from interspace_pruning.cli import main
    from interspace_pruning.experiments.runfiles import read_config

    script = Path(__file__).parents[2] / "recipes" / "fashion_mnist_latency.py"
    spec = importlib.util.spec_from_file_location("fashion_mnist_latency_recipe", script)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    out = tmp_path / "runs"
    fast = ["--train-subset", "100", "--test-subset", "50", "--epochs", "1", "--quiet"]
    assert (
        main(["train", *fast, "--threads", "1", "--sparsity", "0.9", "--out", str(out / "a")]) == 0
    )
    args = argparse.Namespace(
        out=out, batches=[1], threads=1, repeats=2, clock="wall", memory=False, rebench=False
    )
    recipe.time_runs(args)
    written = json.loads((out / "a" / "latency.json").read_text())
    assert written["config_hash"] == config_hash(read_config(out / "a" / "config.json"))
    assert written["results"] and written["source"] == str(out / "a")


def test_a_zero_median_time_is_not_a_timing(timed_sweep, tmp_path):
    """Speed-ups divide by a median time: ``median_ms: 0`` (no file bench writes) made the
    whole report die with ZeroDivisionError; the file is now left out like a damaged one."""
    path = timed_sweep / "ip0" / "latency.json"
    data = json.loads(path.read_text())
    data["results"][0]["engines"]["sparse"]["median_ms"] = 0.0
    path.write_text(json.dumps(data))
    assert latency_results(path) == []
    text = write_report(timed_sweep).read_text()  # the rest is reported
    assert "IP at 98%" not in text and "IP at 90%" in text


def test_without_a_timed_dense_run_the_pruned_runs_dense_times_are_the_reference(timed_sweep):
    """Each pruned run timed its dense (folded) model beside the sparse engine: with no
    dense run timed, the speed-ups over dense come from those times."""
    import shutil

    shutil.rmtree(timed_sweep / "dense")
    for name in ("sp0", "sp1", "ip0"):  # the dense model beside each, as `bench` times it
        path = timed_sweep / name / "latency.json"
        data = json.loads(path.read_text())
        data["results"][0]["engines"]["onnxruntime"] = {"median_ms": 5.0}
        path.write_text(json.dumps(data))
    text = write_report(timed_sweep).read_text()
    # SP 90%: 10 ms against dense torch 20 and ONNX Runtime 5 (every run at the same scale)
    assert "| SP snip | 90% | 80.00 ± 2.83 | 10.00 (sparse) | 2.00x | 0.50x |" in text
    dense = "| dense (timed beside the pruned runs) | 0% | - |"
    assert f"{dense} 20.00 (torch) | 1.00x | 0.25x |" in text
    assert f"{dense} 5.00 (ONNX RT) | 4.00x | 1.00x |" in text
