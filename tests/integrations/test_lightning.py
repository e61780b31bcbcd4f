"""The Lightning callback runs the same pruner objects as a plain loop."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import interspace_pruning as ip

pl = pytest.importorskip("lightning.pytorch")
from interspace_pruning.integrations.lightning import PruningCallback  # noqa: E402


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.net(x).mean(dim=(2, 3)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.01, weight_decay=0.1)


def loader():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 6, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def trainer(**kw):
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_rigl_through_lightning(rep):
    torch.manual_seed(0)
    module = Module()
    ip.prepare(module, rep)
    cb = PruningCallback("rigl", sparsity=0.75, interval=2)
    trainer(max_epochs=2, callbacks=[cb]).fit(module, loader())
    assert cb.pruner.step_count == 24 and len(cb.pruner.events) > 0
    entries = ip.prunable(module)
    total = sum(e.numel() for e in entries)
    assert sum(e.num_kept() for e in entries) == round(0.25 * total)
    for e in entries:
        assert bool((e.param.detach()[e.mask == 0] == 0).all())
    assert any(changed > 0 for _, _, changed in cb.pruner.events)


def test_a_resume_with_more_epochs_does_not_stretch_the_schedule(tmp_path):
    torch.manual_seed(0)
    module = Module()
    ip.prepare(module, "sp")
    cb = PruningCallback("rigl", sparsity=0.75, interval=2)
    first = trainer(max_epochs=1, callbacks=[cb], default_root_dir=tmp_path)
    first.fit(module, loader())
    ckpt = tmp_path / "one_epoch.ckpt"
    first.save_checkpoint(ckpt)
    assert cb.pruner.state_dict()["total_steps"] == 12
    longer = PruningCallback("rigl", sparsity=0.75, interval=2)
    with pytest.raises(ValueError, match="planned over 12 training steps, but it is now bound"):
        trainer(max_epochs=2, callbacks=[longer]).fit(module, loader(), ckpt_path=ckpt)
    kept = PruningCallback("rigl", sparsity=0.75, interval=2, total_steps=12)  # the old plan
    trainer(max_epochs=2, callbacks=[kept]).fit(module, loader(), ckpt_path=ckpt)
    assert kept.pruner.step_count == 24 and kept.pruner.events == cb.pruner.events


def test_sparsity_goes_to_the_trainers_loggers(tmp_path):
    """log_sparsity=True: every epoch's pruning state reaches Lightning's own CSV logger."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    torch.manual_seed(0)
    module = Module()
    ip.prepare(module, "ip")
    cb = PruningCallback("rigl", sparsity=0.75, interval=2, log_sparsity=True)
    csv_logger = CSVLogger(tmp_path, name="run")
    pl.Trainer(
        accelerator="cpu",
        logger=csv_logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=2,
        callbacks=[cb],
    ).fit(module, loader())
    with open(csv_logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("sparsity")]
    assert [int(r["step"]) for r in logged] == [12, 24]
    assert all(abs(float(r["sparsity"]) - 0.75) < 0.01 for r in logged)
    layers = [k for k in rows[0] if k.startswith("layer_sparsity/")]
    assert len(layers) == len(ip.prunable(module))
    assert float(logged[-1]["mask_updates"]) == len(cb.pruner.events) > 0


# ---- a saved state is checked like a file (issue 32) ------------------------------------


@pytest.fixture(scope="module")
def one_epoch_checkpoint(tmp_path_factory):
    """A Lightning checkpoint after one epoch (12 optimiser steps) of RigL."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    module = Module()
    ip.prepare(module, "sp")
    cb = PruningCallback("rigl", sparsity=0.75, interval=2)
    first = trainer(max_epochs=1, callbacks=[cb], default_root_dir=folder)
    first.fit(module, loader())
    first.save_checkpoint(folder / "one_epoch.ckpt")
    return folder / "one_epoch.ckpt", module.state_dict()


def _spoiled(path, tmp_path, spoil):
    ckpt = torch.load(path, weights_only=False)  # our own test file
    (key,) = [k for k in ckpt["callbacks"] if "PruningCallback" in str(k)]
    spoil(ckpt["callbacks"][key])
    out = tmp_path / "spoiled.ckpt"
    torch.save(ckpt, out)
    return out


SPOILED = [
    (lambda s: s.update(step=10**12), "'step' must be a whole number from 0 to 12"),
    (lambda s: s.update(step=-5), "'step' must be a whole number from 0 to 12"),
    (lambda s: s.update(events="abc"), "'events' must be a list of [step, sparsity, changed]"),
    (lambda s: s.pop("events"), "has no 'events'"),
    (lambda s: s.pop("step"), "has no 'step'"),
    (lambda s: s.update(name="gmp"), "is of the 'gmp' pruner, not of 'rigl'"),
    (lambda s: s.pop("generator"), "has no 'generator'"),
]


@pytest.mark.parametrize("spoil,message", SPOILED, ids=[m for _, m in SPOILED])
def test_a_bad_saved_state_is_refused_in_one_line(one_epoch_checkpoint, tmp_path, spoil, message):
    path, weights = one_epoch_checkpoint
    module = Module()
    ip.prepare(module, "sp")
    module.load_state_dict(weights)
    cb = PruningCallback("rigl", sparsity=0.75, interval=2)
    with pytest.raises(ValueError) as e:
        trainer(max_epochs=2, callbacks=[cb]).fit(
            module, loader(), ckpt_path=_spoiled(path, tmp_path, spoil)
        )
    text = str(e.value)
    assert message in text and "\n" not in text, text
    assert "saved state of the rigl pruner" in text


def test_a_good_checkpoint_still_resumes(one_epoch_checkpoint, tmp_path):
    path, weights = one_epoch_checkpoint
    module = Module()
    ip.prepare(module, "sp")
    module.load_state_dict(weights)
    cb = PruningCallback("rigl", sparsity=0.75, interval=2, total_steps=12)
    trainer(max_epochs=2, callbacks=[cb]).fit(module, loader(), ckpt_path=path)
    assert cb.pruner.step_count == 24 and cb.state_dict()["name"] == "rigl"


def test_a_state_ahead_of_the_trainer_is_refused():
    """Loaded by hand (no checkpoint): the step is checked once the trainer's is known."""
    torch.manual_seed(0)
    module = Module()
    ip.prepare(module, "sp")
    donor = ip.pruner("rigl", Module(), None, 0.75, 12, interval=2)
    cb = PruningCallback("rigl", sparsity=0.75, interval=2)
    cb.load_state_dict({**donor.state_dict(), "step": 10**12})
    assert cb.state_dict()["step"] == 10**12  # kept until fitting starts
    with pytest.raises(ValueError, match="has taken 1000000000000 steps, but the trainer resumes"):
        trainer(max_epochs=1, callbacks=[cb]).fit(module, loader())
