"""Brief real training on Fashion-MNIST (installed by .ci/run from Debian's package)."""

import pytest

from interspace_pruning import data
from interspace_pruning.experiments import DataConfig, PruneConfig, RunConfig, run
from interspace_pruning.training import TrainConfig

pytestmark = pytest.mark.skipif(
    not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


def test_real_fashion_mnist_files():
    ds = data.get("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.bincount().tolist() == [6000] * 10
    assert ds.classes[9] == "Ankle boot"


def test_brief_ip_training_on_fashion_mnist(tmp_path):
    cfg = RunConfig(
        data=DataConfig(dataset="fashion-mnist", train_subset=2000, test_subset=1000),
        prune=PruneConfig(representation="ip", method="snip", sparsity=0.9),
        train=TrainConfig(epochs=1, batch_size=64, lr=0.05),
    )
    result = run(cfg, tmp_path, progress=False)
    assert result.summary["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert result.summary["test_acc"] > 0.4  # chance is 0.1
