"""Reports from a tiny fake sweep whose numbers the test chose, and from a real tiny one."""

import json
import statistics

import pytest

from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.foundations.hparams import to_dict
from interspace_pruning.report import collect_runs, write_report
from interspace_pruning.training import TrainConfig


def _fake_run(root, name, rep, method, sparsity, seed, acc, grad0=None, hist=None):
    d = root / name
    d.mkdir(parents=True)
    cfg = RunConfig(
        prune=PruneConfig(representation=rep, method=method, sparsity=sparsity),
        train=TrainConfig(epochs=2, seed=seed),
    )
    (d / "config.json").write_text(json.dumps(to_dict(cfg)))
    summary = {"test_acc": acc, "wall_time": 1.0, "gap_acc": 0.1 * acc}
    if grad0 is not None:
        summary["grad_norm_init"] = grad0
    if hist is not None:
        summary["filter_nnz_hist"] = hist
    (d / "summary.json").write_text(json.dumps(summary))
    rows = [{"epoch": e + 1, "train_loss": 2.0 / (e + 1) + acc, "test_acc": acc} for e in range(2)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def fake_sweep(tmp_path):
    root = tmp_path / "sweep"
    accs = {("sp", 0): 0.60, ("sp", 1): 0.64, ("ip", 0): 0.70, ("ip", 1): 0.74}
    for (rep, seed), acc in accs.items():
        _fake_run(
            root,
            f"{rep}{seed}",
            rep,
            "snip",
            0.95,
            seed,
            acc,
            grad0=1.0 + acc,
            hist=[0, 5, 0, 0, 0, 0, 0, 0, 0, 1] if rep == "sp" else [0] * 9 + [6],
        )
    _fake_run(root, "dense0", "dense", "snip", 0.98, 0, 0.90)
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.json").write_text("{}")
    return root


def test_report_tables_from_known_numbers(fake_sweep):
    records, unfinished = collect_runs(fake_sweep)
    assert len(records) == 5 and [p.name for p in unfinished] == ["unfinished"]
    report = write_report(fake_sweep)
    text = report.read_text()
    sd = statistics.stdev([60, 64])
    # both seeds +10 points: no spread, so no t-test and no winner named
    row = (
        f"| snip | 95% | 62.00 ± {sd:.2f} | 72.00 ± {sd:.2f} | +10.00 (n=2) | - | - "
        "| no significant difference |"
    )
    assert row in text
    assert "| dense | 0% | 90.00 (reference) |" in text
    assert "5 finished runs, 1 unfinished" in text
    assert "Trained: 5 on unrecorded hardware (mean wall time per run 1 s)." in text
    # diagnostics: gradient norm at init (mean of 1.60, 1.64 for SP), gap in points
    assert "1.62 ± 0.0283" in text and "| 6.20 ± 0.28 | 7.20 ± 0.28 |" in text
    for png in ("accuracy", "paired", "curves", "gradnorm", "gap", "filter_density"):
        f = report.parent / f"digits_convnet_{png}.png"
        assert f.is_file() and f.stat().st_size > 1000, png
        assert f"({f.name})" in text


def test_report_says_which_hardware_trained_the_runs(fake_sweep):
    for name, hw, wall in (
        ("sp0", {"cpu": "AMD EPYC (avx2)"}, 400.0),
        ("ip0", {"cpu": "AMD EPYC (avx2)"}, 500.0),
        ("sp1", {"cpu": "Xeon", "gpu": "NVIDIA H200"}, 50.0),
    ):
        summary_file = fake_sweep / name / "summary.json"
        summary = json.loads(summary_file.read_text())
        summary.update(hardware=hw, wall_time=wall)
        summary_file.write_text(json.dumps(summary))
    text = write_report(fake_sweep).read_text()
    assert (
        "Trained: 2 on unrecorded hardware (mean wall time per run 1 s); 2 on AMD EPYC (avx2) "
        "(mean wall time per run 450 s); 1 on NVIDIA H200 (mean wall time per run 50 s)."
    ) in text


def test_min_seeds_leaves_incomplete_rows_out_of_every_section(fake_sweep):
    # rigl has an SP run but no IP run yet: with --min-seeds 2 no table or figure shows it
    _fake_run(fake_sweep, "rigl_sp0", "sp", "rigl", 0.95, 0, 0.50, grad0=1.5)
    everything = write_report(fake_sweep, fake_sweep / "all").read_text()
    complete = write_report(fake_sweep, fake_sweep / "complete", min_seeds=2).read_text()
    assert everything.count("| rigl |") == 3  # IP vs SP, per seed, diagnostics
    assert "| rigl |" not in complete and "| snip | 95% |" in complete
    assert "Left out: 1 row" in complete  # rigl


def test_report_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no runs"):
        write_report(tmp_path / "empty")


def test_a_run_file_names_its_run(fake_sweep):
    run = next(p for p in fake_sweep.iterdir() if (p / "summary.json").is_file())
    assert write_report(run / "summary.json") == write_report(run)


def test_a_single_damaged_run_is_named_with_its_file(fake_sweep):
    """`interspace report RUN` on one run whose config.json is damaged names the file and
    the problem, as a report of its parent folder does, not only a count."""
    run = next(p for p in fake_sweep.iterdir() if (p / "config.json").is_file())
    (run / "config.json").write_text("{bad")
    with pytest.raises(ValueError, match="1 with damaged files.*config.json is not valid JSON"):
        write_report(run)


def test_report_of_a_real_tiny_sweep_has_basis_and_filter_pictures(tmp_path):
    from interspace_pruning import data
    from interspace_pruning.experiments.grid import expand, run_grid

    ds = data.get("digits", train_subset=200, test_subset=50)
    base = RunConfig(train=TrainConfig(epochs=1, batch_size=32))
    cfgs = expand(base, {"prune.representation": ["sp", "ip"], "prune.sparsity": [0.9]})
    for cfg in cfgs:  # run_grid would load the full dataset; use the subset directly
        from interspace_pruning.experiments import run
        from interspace_pruning.experiments.grid import run_dir

        run(cfg, run_dir(tmp_path, cfg), dataset=ds, progress=False)
    assert len(list(run_grid(cfgs, tmp_path, progress=False))) == 2  # all finished
    report = write_report(tmp_path)
    text = report.read_text()
    for png in ("bases", "filters"):
        assert (report.parent / f"digits_convnet_{png}.png").is_file(), png
    assert "grad" in text and "dense 3x3 filters" in text
    # a clone has the model.isp a campaign kept, not model.pt: the pictures come from it
    from interspace_pruning.experiments.results import keep_sparse_model
    from interspace_pruning.report.build import KEPT_FIGURE

    for rec in collect_runs(tmp_path)[0]:
        keep_sparse_model(rec.config, rec.path, rec.summary)
        (rec.path / "model.pt").unlink()
    for png in ("bases", "filters"):
        (report.parent / f"digits_convnet_{png}.png").unlink()
    text = write_report(tmp_path).read_text()
    for png in ("bases", "filters"):
        assert (report.parent / f"digits_convnet_{png}.png").is_file(), png
    assert KEPT_FIGURE not in text


def test_pairs_fine_tuned_from_different_weights_are_named():
    from pathlib import Path

    from interspace_pruning.experiments import ModelConfig
    from interspace_pruning.report.build import mismatched_starts
    from interspace_pruning.report.collect import RunRecord

    def record(rep, seed, digest):
        cfg = RunConfig(
            model=ModelConfig(init_from="runs/dense0"),
            prune=PruneConfig(representation=rep, method="magnitude", sparsity=0.95),
            train=TrainConfig(seed=seed),
        )
        return RunRecord(Path("x"), cfg, {"test_acc": 0.5, "init_from_sha256": digest})

    same = [record("sp", 0, "aa"), record("ip", 0, "aa")]
    assert mismatched_starts(same) == []
    (line,) = mismatched_starts([*same, record("sp", 1, "aa"), record("ip", 1, "bb")])
    assert "magnitude (trained + fine-tune) 95% seed 1" in line


def test_runs_that_read_different_data_are_flagged():
    from pathlib import Path

    from interspace_pruning.report.build import mixed_data
    from interspace_pruning.report.collect import RunRecord

    def record(digest):
        summary = {"test_acc": 0.5} | ({"data_sha256": digest} if digest else {})
        return RunRecord(Path("x"), RunConfig(), summary)

    assert mixed_data([record("a" * 64), record("a" * 64), record(None)]) == []
    (line,) = mixed_data([record("a" * 64), record("b" * 64), record(None)])
    assert line.startswith("- ⚠") and "1 runs read data aaaaaaaaaaaa" in line


def _stamp(root, name, **summary):
    """Add entries to a fake run's summary.json."""
    f = root / name / "summary.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), **summary}))


def test_each_precision_gets_its_own_section_and_no_pair_crosses_them(tmp_path):
    root = tmp_path / "sweep"
    for rep, seed, acc in (("sp", 0, 0.60), ("ip", 0, 0.70), ("sp", 1, 0.62), ("ip", 1, 0.71)):
        _fake_run(root, f"fp32_{rep}{seed}", rep, "snip", 0.95, seed, acc)
        # the same cells in bf16 (recorded by the stretches), 20 points lower
        _fake_run(root, f"bf16_{rep}{seed}", rep, "snip", 0.95, seed, acc - 0.2)
        stretch = {"machine": "Intel Xeon (avx512f, amx)", "precision": "bf16", "from_epoch": 0}
        _stamp(root, f"bf16_{rep}{seed}", stretches=[stretch])
    text = write_report(root).read_text()
    assert "## digits / convnet, bf16\n" in text and "## digits / convnet, fp32\n" in text
    bf16 = text[text.index("## digits / convnet, bf16") : text.index("## digits / convnet, fp32")]
    fp32 = text[text.index("## digits / convnet, fp32") :]
    # each section pairs its own runs only: 40/41 vs 50/51 in bf16, 60/62 vs 70/71 in fp32
    assert "| snip | 95% | 41.00 ± 1.41 | 50.50 ± 0.71 | +9.50 [" in bf16
    assert "| snip | 95% | 61.00 ± 1.41 | 70.50 ± 0.71 | +9.50 [" in fp32
    assert "trained in bf16:" in bf16 and "trained in fp32:" in fp32
    assert "(digits_convnet_bf16_paired.png)" in bf16


def test_a_pair_trained_on_two_kinds_of_machine_is_marked_in_the_report(fake_sweep):
    _stamp(fake_sweep, "sp0", hardware={"cpu": "AMD EPYC (avx2)", "device": "cpu"})
    _stamp(fake_sweep, "ip0", stretches=[{"machine": "NVIDIA H200", "precision": "fp32"}])
    for name in ("sp1", "ip1"):
        _stamp(fake_sweep, name, hardware={"cpu": "AMD EPYC (avx2)", "device": "cpu"})
    text = write_report(fake_sweep).read_text()
    assert "| no significant difference ⚠ mixed machines in 1 of 2 seeds |" in text
    assert "- ⚠ snip 95%: seed 0: SP on AMD EPYC (avx2), IP on NVIDIA H200" in text
    assert "⚠ 1 of these 2 pairs trained on two kinds of machine." in text
    assert "60.00 → 70.00 (+10.00) ⚠ | 64.00 → 74.00 (+10.00) |" in text  # per seed


def test_wall_time_of_a_continued_run_counts_every_stretch(fake_sweep):
    # wall_time is the last process's; a run continued from a checkpoint trained longer
    def stretch(started, ended):
        return {
            "machine": "AMD EPYC (avx2)",
            "precision": "fp32",
            "started": started,
            "ended": ended,
        }

    summary_file = fake_sweep / "sp0" / "summary.json"
    summary = json.loads(summary_file.read_text())
    summary.update(
        wall_time=600.0,
        stretches=[
            stretch("2026-12-06T04:00:00Z", "2026-12-06T05:00:00Z"),  # 3600 s, stopped
            stretch("2026-12-06T08:00:00Z", "2026-12-06T08:10:00Z"),  # 600 s, finished
        ],
    )
    summary_file.write_text(json.dumps(summary))
    text = write_report(fake_sweep).read_text()
    assert "1 on AMD EPYC (avx2) (mean wall time per run 4200 s)" in text


def test_run_seconds_falls_back_to_wall_time_when_a_stretch_lacks_a_time():
    from interspace_pruning.experiments.stretches import run_seconds

    one = {"started": "2026-12-06T04:00:00Z", "ended": "2026-12-06T05:00:00Z"}
    assert run_seconds({"wall_time": 7.0, "stretches": [one, {"started": "bad"}]}) == 7.0
    assert run_seconds({"wall_time": 7.0, "stretches": [one]}) == 7.0  # one process: its own
    assert run_seconds({"wall_time": 7.0, "stretches": [one, one]}) == 7200.0
    assert run_seconds({}) == 0.0


def test_a_figure_from_the_models_is_kept_where_the_models_are_not(fake_sweep):
    """model.pt stays on the machine that trained a run: a report that cannot draw a figure
    from the run files here keeps the one an earlier report drew, says so, and never
    invents one."""
    from interspace_pruning.report.build import KEPT_FIGURE

    text = write_report(fake_sweep).read_text()
    assert "### filter basis" not in text and KEPT_FIGURE not in text  # none drawn, none kept
    out = next(fake_sweep.rglob("*_accuracy.png")).parent
    slug = next(out.glob("*_accuracy.png")).name.removesuffix("_accuracy.png")
    (out / f"{slug}_bases.png").write_bytes(b"\x89PNG drawn earlier")
    text = write_report(fake_sweep).read_text()
    assert f"![filter basis: initial vs learned]({slug}_bases.png)\n\n{KEPT_FIGURE}" in text
    assert "### sparse filters" not in text  # no earlier file: no section
    for name in ("model.pt", "bases_init.pt"):  # damaged files here: still not drawable
        (fake_sweep / "ip0" / name).write_bytes(b"")
    text = write_report(fake_sweep).read_text()
    assert KEPT_FIGURE in text and "ip0" in text  # kept, and the unusable model is named
