"""Device handling: resolution and errors, run identity across devices, device-generic
forward/prune/data paths (checked on the ``meta`` device), channels_last, torch.compile
with in-place mask updates, and GPU-only checks marked ``cuda``."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import interspace_pruning as ip
from interspace_pruning import data
from interspace_pruning.experiments.config import RunConfig
from interspace_pruning.foundations.hparams import config_hash
from interspace_pruning.masks import prunable
from interspace_pruning.pruning.registry import ScoringContext, get_method
from interspace_pruning.training import TrainConfig, distributed, train
from interspace_pruning.training import device as dev

from ..conftest import MixedNet

# --- resolution and errors ---------------------------------------------------------------


def test_resolve_device():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert dev.resolve_device("auto").type == want
    assert dev.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown --device 'tpu'"):
        dev.resolve_device("tpu")
    with pytest.raises(ValueError, match=r"cuda:N with an integer|not available"):
        dev.resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--device cuda: CUDA is not available") as e:
        dev.resolve_device("cuda")
    assert "\n" not in str(e.value)
    from interspace_pruning.cli import main

    rc = main(["train", "--epochs", "1", "--device", "cuda", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "CUDA is not available" in err and len(err.splitlines()) == 1


def test_auto_precision_and_layout_follow_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2"}))
    assert dev.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert dev.resolve_precision("auto", cpu) == "bf16"
    assert dev.resolve_precision("fp16", cpu) == "fp16"
    assert dev.resolve_channels_last("auto", cpu) is True  # faster on every CPU measured
    assert dev.resolve_channels_last("auto", torch.device("cuda", 0)) is True
    assert dev.resolve_channels_last("on", cpu) is True
    with pytest.raises(ValueError, match="unknown precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown --channels-last"):
        TrainConfig(channels_last="yes")


def test_backend_choice():
    assert distributed.backend_for("cpu") == "gloo"
    expected = (
        "nccl" if torch.cuda.is_available() and torch.distributed.is_nccl_available() else "gloo"
    )
    assert distributed.backend_for("auto") == expected


def test_fp32_on_cuda_switches_tf32_off_and_16_bit_precisions_leave_it():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        dev.configure_backends(torch.device("cpu"), "fp32")  # CPUs: nothing to change
        assert cudnn.allow_tf32 and matmul.allow_tf32
        dev.configure_backends(torch.device("cuda"), "bf16")
        assert cudnn.allow_tf32 and cudnn.benchmark
        dev.configure_backends(torch.device("cuda"), "fp32")
        assert not cudnn.allow_tf32 and not matmul.allow_tf32
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


# --- run identity --------------------------------------------------------------------------


def test_config_hash_keeps_existing_run_names_and_ignores_execution_options():
    base = RunConfig()
    other = RunConfig(prune=dataclasses.replace(base.prune, sparsity=0.9))
    # committed runs keep their directories: these are the hashes the code before the
    # execution options and the Representation refactor (commit 2fb1c79) gave them
    assert (config_hash(base), config_hash(other)) == ("e6518f2a3f", "fb2394a2ef")
    h = config_hash(base)
    for change in ({"device": "cuda:1"}, {"channels_last": "on"}, {"compile": True}):
        cfg = RunConfig(train=TrainConfig(**change))
        assert config_hash(cfg) == h, change  # a GPU run resumes on a CPU and back
    for change in ({"precision": "bf16"}, {"sync_bn": True}, {"seed": 1}):
        assert config_hash(RunConfig(train=TrainConfig(**change))) != h, change


# --- nothing pinned to the CPU: the meta device -------------------------------------------


def _meta_model(rep: str) -> MixedNet:
    torch.manual_seed(0)
    model = MixedNet()
    if rep == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", 0.5)
    return model.to("meta")


@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_forward_and_backward_run_on_meta(rep):
    model = _meta_model(rep).train()
    for e in prunable(model):
        assert e.mask.device.type == "meta"
        if e.kind == "ip":
            assert e.parametrization.basis.weight.device.type == "meta"
    x = torch.empty(4, 3, 16, 16, device="meta")
    y = torch.empty(4, dtype=torch.long, device="meta")
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters())


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "random", "magnitude"])
@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_pruning_criteria_run_on_meta(method, rep):
    model = _meta_model(rep)
    spec = get_method(method)
    model.train(spec.mode == "train")
    batches = [
        (torch.empty(4, 3, 16, 16, device="meta"), torch.empty(4, dtype=torch.long, device="meta"))
    ]
    ctx = ScoringContext(model, prunable(model), batches, F.cross_entropy, (3, 16, 16))
    with torch.enable_grad():
        scores = spec.score(ctx)
    for s, e in zip(scores, ctx.entries, strict=True):
        assert s.device.type == "meta" and s.shape == e.param.shape


def test_dense_gradients_run_on_meta():
    from interspace_pruning.masks.dense_grad import dense_gradients

    model = _meta_model("ip").train()
    x = torch.empty(4, 3, 16, 16, device="meta")
    y = torch.empty(4, dtype=torch.long, device="meta")
    grads = dense_gradients(model, prunable(model), x, y, F.cross_entropy)
    assert all(g.device.type == "meta" for g in grads)


def test_dataset_batches_stay_on_the_data_device():
    ds = data.get("digits", train_subset=64, test_subset=32)
    ds.augment = "crop-flip"
    assert ds.to("cpu") is ds
    meta = ds.to("meta")
    assert meta.train_x.dtype == ds.train_x.dtype and meta.device.type == "meta"
    g = torch.Generator().manual_seed(0)
    for x, y in meta.train_batches(16, g):
        assert x.device.type == "meta" and y.device.type == "meta" and x.dtype == torch.float32
        assert x.shape == (16, 1, 8, 8)
    for x, _ in meta.test_batches(10):
        assert x.device.type == "meta"


# --- channels_last -------------------------------------------------------------------------


@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_channels_last_weights_and_same_function(rep):
    torch.manual_seed(0)
    model = MixedNet().eval()
    if rep == "ip":
        ip.to_interspace(model)
    ip.prune(model, "magnitude", 0.5)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        dev.set_channels_last(model, True)
        w = model.stem.weight
        assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    dev.set_channels_last(model, False)
    assert model.stem.weight.is_contiguous()


def test_training_on_cpu_with_options_matches_plain_training():
    ds = data.get("digits", train_subset=128, test_subset=50)

    def run(**kw):
        torch.manual_seed(0)
        model = ip.to_interspace(ip.models.get("convnet", 10, 1, width=8))
        ip.prune(model, "random", 0.7)
        hist = train(model, ds, TrainConfig(epochs=2, batch_size=32, **kw), progress=False)
        return [{k: v for k, v in h.items() if "time" not in k and k != "elapsed"} for h in hist]

    plain = run(device="cpu")  # (the default device, auto, is a GPU where there is one)
    assert run(device="cpu", channels_last="on") == plain  # auto on a CPU is exactly this
    contiguous = run(device="cpu", channels_last="off")
    for a, b in zip(contiguous, plain, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


# --- torch.compile -------------------------------------------------------------------------


def test_compile_sees_in_place_mask_updates_without_recompiling():
    import torch._dynamo

    torch._dynamo.reset()
    compiles = []

    def backend(gm, example_inputs):
        compiles.append(gm)
        return gm.forward

    torch.manual_seed(0)
    model = ip.to_interspace(MixedNet().eval())
    ip.prune(model, "magnitude", 0.5)
    net = torch.compile(model, backend=backend)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x))
        n = len(compiles)
        assert n >= 1
        for e in prunable(model):  # a schedule's mask update: in place
            keep = torch.rand(e.param.shape) < 0.3
            e.set_mask(ip.Mask(keep))
        eager = model(x)
        torch.testing.assert_close(net(x), eager)  # no stale mask
    assert len(compiles) == n  # and no recompilation
    torch._dynamo.reset()


def test_train_with_compile(monkeypatch):
    """``--compile`` through the training loop (an eager backend keeps the test fast)."""
    import torch._dynamo

    torch._dynamo.reset()
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend="aot_eager"))
    ds = data.get("digits", train_subset=96, test_subset=30)
    torch.manual_seed(0)
    model = ip.to_interspace(ip.models.get("convnet", 10, 1, width=8))
    ip.prune(model, "random", 0.7)
    hist = train(model, ds, TrainConfig(epochs=2, batch_size=32, compile=True), progress=False)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] * 1.5 and hist[-1]["sparsity"] > 0.69
    torch._dynamo.reset()


# --- GPU only ------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_batches_identical_to_cpu():
    ds = data.get("digits", train_subset=128, test_subset=32)
    ds.augment = "crop-flip"
    gpu = ds.to("cuda")
    a = list(ds.train_batches(32, torch.Generator().manual_seed(3)))
    b = list(gpu.train_batches(32, torch.Generator().manual_seed(3)))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xb.is_cuda and torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu())


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_keeps_zeros_and_resumes_on_cpu(precision, tmp_path):
    ds = data.get("digits", train_subset=128, test_subset=32)
    torch.manual_seed(0)
    model = ip.to_interspace(ip.models.get("convnet", 10, 1, width=8))
    ip.prune(model, "random", 0.8)
    cfg = TrainConfig(epochs=2, batch_size=32, device="cuda", precision=precision)
    train(model, ds, cfg, out_dir=tmp_path, progress=False)
    for e in prunable(model):
        assert e.param.is_cuda and bool((e.param.detach()[e.mask == 0] == 0).all())
    cpu_cfg = TrainConfig(epochs=3, batch_size=32, device="cpu", precision=precision)
    torch.manual_seed(0)
    again = ip.to_interspace(ip.models.get("convnet", 10, 1, width=8))
    ip.prune(again, "random", 0.8)
    # the checkpoint written on the GPU loads onto the CPU
    from interspace_pruning.training.checkpointing import read_checkpoint

    again.load_state_dict(read_checkpoint(tmp_path / "checkpoint.pt")["model"])
    assert next(again.parameters()).device.type == "cpu"
    del cpu_cfg


@pytest.mark.cuda
@pytest.mark.parametrize("rep", ["sp", "ip"])
def test_cuda_fp32_run_matches_the_cpu_run_up_to_rounding(rep):
    """Run directories do not hash the device: in fp32 (TF32 off) a GPU run must follow the
    CPU run's trajectory, same masks and all, and differ by rounding only."""
    ds = data.get("digits", train_subset=256, test_subset=64)
    models = []
    for where in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = ip.models.get("convnet", 10, 1, width=8)
        if rep == "ip":
            model = ip.to_interspace(model)
        ip.prune(model, "random", 0.9)
        cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, device=where, precision="fp32")
        train(model, ds, cfg, progress=False)
        models.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
    for k, v in models[0].items():
        if v.is_floating_point():
            assert torch.allclose(v, models[1][k], rtol=1e-3, atol=1e-4), k
        else:
            assert torch.equal(v, models[1][k]), k


def test_cpu_model_names_the_widest_vector_extension(monkeypatch):
    monkeypatch.setattr(dev, "_cpuinfo", lambda: ("AMD EPYC", frozenset({"avx2", "fma"})))
    assert dev.cpu_model() == "AMD EPYC (avx2)"
    monkeypatch.setattr(dev, "_cpuinfo", lambda: ("", frozenset({"asimd"})))  # aarch64
    assert dev.cpu_model().endswith("(asimd)") and dev.cpu_flags() == {"asimd"}


def test_machine_kind_and_native_precisions(monkeypatch):
    monkeypatch.setattr(dev, "_cpuinfo", lambda: ("AMD EPYC", frozenset({"avx2"})))
    assert dev.machine_kind("cpu") == "AMD EPYC (avx2)"
    assert dev.precision_is_native("fp32") and not dev.precision_is_native("bf16")
    flags = frozenset({"avx2", "avx512f", "avx512_bf16"})
    monkeypatch.setattr(dev, "_cpuinfo", lambda: ("AMD EPYC", flags))
    assert dev.machine_kind("cpu") == "AMD EPYC (avx512f, avx512-bf16)"
    assert dev.precision_is_native("bf16") and not dev.precision_is_native("fp16")
    xeon = frozenset({"avx512f", "avx512_bf16", "amx_bf16"})
    monkeypatch.setattr(dev, "_cpuinfo", lambda: ("Intel Xeon", xeon))
    assert dev.machine_kind("cpu") == "Intel Xeon (avx512f, amx)"


ZEN5_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu avx2 avx512f avx512_bf16

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
"""


def test_cpu_id_names_the_generation_that_the_model_name_hides():
    assert dev.parse_cpu_id(ZEN5_CPUINFO) == "AuthenticAMD family 26 model 2 stepping 1"
    aarch64 = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU part\t: 0xd0c\n"
    assert dev.parse_cpu_id(aarch64) == "" and dev.parse_cpu_id("") == ""
    assert dev.hardware(torch.device("cpu"))["cpu_id"] == dev.cpu_id()
