import pytest

import interspace_pruning as ip
from interspace_pruning.experiments import ModelConfig, PruneConfig, RunConfig, run
from interspace_pruning.foundations.checkpoint import file_digest, save_tensors
from interspace_pruning.training import TrainConfig


@pytest.fixture(scope="module")
def dense_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    cfg = RunConfig(
        prune=PruneConfig(representation="dense"), train=TrainConfig(epochs=8, batch_size=32)
    )
    summary = run(cfg, out, dataset=digits, progress=False).summary
    assert summary["test_acc"] > 0.8
    return out


@pytest.mark.parametrize("representation,basis", [("sp", "dct"), ("ip", "pca"), ("ip", "dct")])
def test_prune_a_trained_model_then_fine_tune(representation, basis, digits, dense_run, tmp_path):
    cfg = RunConfig(
        model=ModelConfig(init_from=str(dense_run)),
        prune=PruneConfig(
            representation=ip.Representation(representation, basis=basis),
            method="magnitude",
            sparsity=0.8,
        ),
        train=TrainConfig(epochs=2, batch_size=32, lr=0.01),
    )
    result = run(cfg, tmp_path, dataset=digits, progress=False)
    assert result.summary["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert result.summary["test_acc"] > 0.3
    assert result.summary["init_from_sha256"] == file_digest(dense_run / "model.pt")


def test_init_from_errors(digits, dense_run, tmp_path):
    pruned = RunConfig(
        prune=PruneConfig(sparsity=0.5, method="random"), train=TrainConfig(epochs=1)
    )
    run(pruned, tmp_path / "pruned", dataset=digits, progress=False)
    cases = [
        (str(tmp_path / "pruned"), "convnet", "holds a pruned or converted model"),
        (str(dense_run), "resnet20", "does not fit model CifarResNet"),
        (str(tmp_path / "nothing"), "convnet", "not found"),
    ]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases.append((str(tmp_path / "junk.pt"), "convnet", "cannot read model file"))
    save_tensors(tmp_path / "list.pt", {"a": 1})
    for path, model, match in cases:
        cfg = RunConfig(
            model=ModelConfig(model=model, init_from=path),
            prune=PruneConfig(method="magnitude"),
            train=TrainConfig(epochs=1),
        )
        with pytest.raises(ValueError, match=match):
            run(cfg, None, dataset=digits, progress=False)
