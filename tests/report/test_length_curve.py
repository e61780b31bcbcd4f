"""Runs of one cell trained for different numbers of epochs are never paired across lengths:
each length gets its own table, and the report adds IP − SP against training length."""

import json

from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.foundations.hparams import to_dict
from interspace_pruning.report import write_report
from interspace_pruning.training import TrainConfig


def _fake(root, rep, seed, epochs, acc):
    cfg = RunConfig(
        prune=PruneConfig(representation=rep, method="snip", sparsity=0.98),
        train=TrainConfig(epochs=epochs, seed=seed),
    )
    d = root / f"{rep}{seed}e{epochs}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(to_dict(cfg)))
    (d / "summary.json").write_text(json.dumps({"test_acc": acc, "wall_time": 1.0}))
    rows = [{"epoch": e + 1, "train_loss": 1.0, "test_acc": acc} for e in range(epochs)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_each_length_has_its_table_and_the_gap_is_plotted_against_length(tmp_path):
    root = tmp_path / "runs"
    gaps = {2: [0.10, 0.12, 0.11], 8: [0.02, 0.01, 0.03]}  # the gap shrinks with training
    for epochs, gap in gaps.items():
        for seed, g in enumerate(gap):
            _fake(root, "sp", seed, epochs, 0.5 + seed / 100)
            _fake(root, "ip", seed, epochs, 0.5 + seed / 100 + g)
    text = write_report(root).read_text()
    assert "## digits / convnet, 2 epochs" in text and "## digits / convnet, 8 epochs" in text
    assert "| snip | 98% | 2 | +11.00 [" in text and "| snip | 98% | 8 | +2.00 [" in text
    assert "## digits / convnet: IP − SP against training length" in text
    assert (root / "report" / "digits_convnet_length.png").stat().st_size > 1000
    # the 2-epoch table pairs only 2-epoch runs: its mean is +11.00, not a mix with +2.00
    two = text[text.index("## digits / convnet, 2 epochs") : text.index("## digits / convnet, 8")]
    assert "| +11.00 [" in two and "+6.50" not in text


def test_the_length_curve_has_one_precision_per_section(tmp_path):
    import pytest

    from interspace_pruning.report.tables import length_curve

    root = tmp_path / "runs"
    for epochs, gap, precision in ((2, 0.10, "fp32"), (8, 0.02, "fp32"), (2, 0.20, "bf16")):
        for seed in range(2):
            for rep, acc in (("sp", 0.5 + seed / 100), ("ip", 0.5 + seed / 100 + gap + seed / 200)):
                _fake(tmp_path / precision, rep, seed, epochs, acc)
                d = tmp_path / precision / f"{rep}{seed}e{epochs}"
                summary = json.loads((d / "summary.json").read_text())
                summary["numerics"] = {"precision": precision}
                (d / "summary.json").write_text(json.dumps(summary))
                root.mkdir(exist_ok=True)
                d.rename(root / f"{precision}_{d.name}")
    text = write_report(root).read_text()
    assert "## digits / convnet, bf16\n" in text and "## digits / convnet, fp32, 2 epochs" in text
    # only fp32 ran at two lengths: its curve pairs fp32 runs only (+10.25 at 2 epochs, not bf16's)
    curve = text[text.index("## digits / convnet, fp32: IP − SP against training length") :]
    assert "| snip | 98% | 2 | +10.25 " in curve and "+20.25" not in curve
    assert "bf16: IP − SP against training length" not in text
    from interspace_pruning.report.collect import collect_runs

    records, _ = collect_runs(root)
    with pytest.raises(ValueError, match="several precisions"):
        length_curve([(r.config, r.summary) for r in records])
