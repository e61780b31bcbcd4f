"""Mixed precision: exact zeros, GradScaler, the dtype of the IP weight, dtype-following
masks and bases. All on the CPU (bf16 and fp16 autocast and the GradScaler work there)."""

import pytest
import torch
import torch.nn.functional as F

import interspace_pruning as ip
from interspace_pruning import data
from interspace_pruning.masks import prunable
from interspace_pruning.training import TrainConfig, build_optimizer, train
from interspace_pruning.training import device as dev

from ..conftest import MixedNet, random_batches

PRECISIONS = ["fp32", "bf16", "fp16"]


def _pruned(rep: str, sparsity: float = 0.7) -> MixedNet:
    torch.manual_seed(0)
    model = MixedNet().train()
    if rep == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", sparsity)
    return model


def _pruned_entries_zero(model) -> None:
    for e in prunable(model):
        off = e.mask == 0
        assert off.any()
        assert bool((e.param.detach()[off] == 0).all()), f"{e.name}: pruned entry moved"
        if e.kind == "sp":  # the effective spatial weight too
            assert bool((e.module.weight.detach()[off] == 0).all())


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_pruned_entries_stay_exactly_zero(precision, optimizer, rep):
    model = _pruned(rep)
    masks = [e.mask.clone() for e in prunable(model)]
    cfg = TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=0.1, precision=precision)
    opt = build_optimizer(model, cfg)
    device = torch.device("cpu")
    scaler = dev.grad_scaler(device, precision)
    assert scaler.is_enabled() == (precision == "fp16")
    for x, y in random_batches(4, (3, 16, 16), 5):
        opt.zero_grad(set_to_none=True)
        with dev.autocast(device, precision):
            out = model(x)
            if precision != "fp32":
                assert out.dtype == (torch.bfloat16 if precision == "bf16" else torch.float16)
            loss = F.cross_entropy(out.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    _pruned_entries_zero(model)
    for e, m in zip(prunable(model), masks, strict=True):
        assert torch.equal(e.mask, m)
        assert e.param.dtype == torch.float32  # autocast never changes the stored tensors
    # and the unpruned entries did train
    assert any((e.param.grad is not None and e.param.grad.abs().sum() > 0) for e in prunable(model))


@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_skipped_gradscaler_step_keeps_zeros_and_parameters(rep):
    model = _pruned(rep)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    device = torch.device("cpu")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)  # overflows fp16 gradients
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = random_batches(1, (3, 16, 16), 5)[0]
    with dev.autocast(device, "fp16"):
        loss = F.cross_entropy(model(x).float(), y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() < 2.0**40  # the step was skipped and the scale backed off
    after = model.state_dict()
    for k, v in before.items():
        if "running" in k or "num_batches" in k:
            continue  # BN statistics move in the forward pass, as they should
        assert torch.equal(after[k], v), f"{k} changed in a skipped step"
    _pruned_entries_zero(model)


def test_ip_weight_is_formed_in_fp32_under_autocast():
    model = _pruned("ip")
    conv = model.stem
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = conv.weight
        out = model(torch.randn(2, 3, 16, 16))
    assert w.dtype == torch.float32 and out.dtype == torch.bfloat16
    with torch.no_grad():
        p = conv.parametrizations.weight[0]
        exact = (conv.parametrizations.weight.original * p.mask) @ p.basis()
    assert torch.equal(w.detach(), exact.view_as(w))


def test_masks_and_bases_follow_the_parameters_dtype():
    torch.manual_seed(0)
    model = MixedNet().double()
    ip.to_interspace(model)
    ip.prune(model, "magnitude", 0.5)
    for e in prunable(model):
        assert e.mask.dtype == torch.float64 == e.param.dtype
        if e.kind == "ip":
            assert e.parametrization.basis.weight.dtype == torch.float64
    assert model(torch.randn(2, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64
    model.float()  # and they follow a later conversion too
    for e in prunable(model):
        assert e.mask.dtype == torch.float32 == e.param.dtype


@pytest.fixture(scope="module")
def digits():
    return data.get("digits", train_subset=256, test_subset=100)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_in_low_precision_learns_and_keeps_sparsity(digits, precision):
    torch.manual_seed(0)
    model = ip.to_interspace(ip.models.get("convnet", 10, 1, width=8))
    ip.prune(model, "random", 0.8)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, device="cpu", precision=precision)
    hist = train(model, digits, cfg, progress=False)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    _pruned_entries_zero(model)


def test_fp16_checkpoint_keeps_the_scaler_and_resumes(digits, tmp_path):
    from interspace_pruning.training.checkpointing import read_checkpoint

    def fresh():
        torch.manual_seed(0)
        m = ip.models.get("convnet", 10, 1, width=8)
        ip.prune(m, "random", 0.5)
        return m

    cfg = TrainConfig(epochs=2, batch_size=32, precision="fp16", device="cpu")
    hist = train(fresh(), digits, cfg, out_dir=tmp_path, progress=False, tag="t")
    ckpt = read_checkpoint(tmp_path / "checkpoint.pt")
    assert "scaler" in ckpt and ckpt["scaler"]["scale"] > 0
    again = train(fresh(), digits, cfg, out_dir=tmp_path, progress=False, resume=True, tag="t")
    assert again == hist  # restored from the checkpoint, scaler included, nothing retrained
