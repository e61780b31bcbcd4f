"""Dense training in the interspace: IP at sparsity 0 keeps every coefficient and trains
the filter bases."""

import torch

from interspace_pruning.bases import filter_bases
from interspace_pruning.experiments import DataConfig, ModelConfig, PruneConfig, RunConfig
from interspace_pruning.experiments.run import run
from interspace_pruning.foundations.hparams import config_hash
from interspace_pruning.masks import prunable
from interspace_pruning.training import TrainConfig


def test_ip_at_sparsity_zero_trains_a_dense_model_with_learned_bases(tmp_path):
    cfg = RunConfig(
        data=DataConfig(dataset="digits", train_subset=200, test_subset=100),
        model=ModelConfig(model="convnet"),
        prune=PruneConfig(representation="ip", method="random", sparsity=0.0),
        train=TrainConfig(epochs=1, batch_size=32),
    )
    result = run(cfg, tmp_path / "run", progress=False)
    assert result.summary["representation"] == "ip" and result.summary["sparsity"] == 0.0
    entries = prunable(result.model)
    assert entries and all(e.num_kept() == e.numel() for e in entries)
    assert result.summary["basis_grad_norm_init"] > 0
    where = result.summary["hardware"]  # wall_time means nothing without the machine
    assert where["device"] == "cpu" and where["cpu"] and where["torch"] == torch.__version__
    init = torch.load(tmp_path / "run" / "bases_init.pt", weights_only=True)
    learned = [fb.weight.detach() for fb in filter_bases(result.model)]
    assert init.pop("config_hash") == config_hash(result.config)  # whose bases they are
    assert len(learned) == len(init) > 0
    changed = [i for i, w in enumerate(learned) if not torch.equal(w, init[f"basis{i}"])]
    assert changed, "the filter bases did not train"
