"""``--eval-every``: a run evaluates the test set less often and trains the same model."""

from interspace_pruning.cli.main import build_parser
from interspace_pruning.experiments import DataConfig, ModelConfig, PruneConfig, RunConfig
from interspace_pruning.experiments.run import run
from interspace_pruning.experiments.runfiles import read_metrics
from interspace_pruning.training import TrainConfig


def test_a_run_that_evaluates_every_second_epoch_summarises_its_evaluations(tmp_path):
    cfg = RunConfig(
        data=DataConfig(dataset="digits", train_subset=200, test_subset=100),
        model=ModelConfig(model="convnet"),
        prune=PruneConfig(representation="ip", method="snip", sparsity=0.9),
        train=TrainConfig(epochs=3, batch_size=32, eval_every=2),
    )
    result = run(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")  # schema-checked as the report reads
    tested = [r for r in rows if "test_acc" in r]
    assert [r["epoch"] for r in tested] == [2, 3]
    s = result.summary
    assert s["test_acc"] == rows[-1]["test_acc"] and s["test_loss"] == rows[-1]["test_loss"]
    assert s["best_test_acc"] == max(r["test_acc"] for r in tested)
    assert s["epochs"] == 3


def test_the_command_line_takes_eval_every():
    args = build_parser().parse_args(["train", "--eval-every", "5"])
    assert args.eval_every == 5
