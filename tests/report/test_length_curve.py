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
