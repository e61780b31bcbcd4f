"""Compact storage of mostly-zero tensors in checkpoints: exact round trips, shared bitmaps,
refusal of malformed or expanding entries, and a pruned run that resumes from one."""

from __future__ import annotations

import io
from collections import OrderedDict

import pytest
import torch

from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.experiments.config import DataConfig, ModelConfig
from interspace_pruning.foundations import sparse_encoding as se
from interspace_pruning.foundations.checkpoint import load_tensors, save_tensors
from interspace_pruning.training import TrainConfig
from interspace_pruning.training.checkpointing import read_checkpoint

from ..training.test_resume import Crash, _metrics, _same_models


def _sparse(shape, density, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g).to(dtype)
    return torch.where(torch.rand(shape, generator=g) < density, t, torch.zeros((), dtype=dtype))


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def _same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(_bits(a.contiguous()), _bits(b))
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert a == b


def _through_file(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True), len(buf.getvalue())


def test_round_trip_keeps_every_value_bit_and_container():
    nan = torch.tensor(float("nan")).view(torch.int32).bitwise_or(7).view(torch.float32)
    w = _sparse((64, 32, 3, 3), 0.05)
    w.view(-1)[5] = nan  # a NaN with a payload comes back with its bits
    state = OrderedDict(
        [
            ("w", w),
            ("channels_last", _sparse((32, 16, 3, 3), 0.1).to(memory_format=torch.channels_last)),
            ("bf16", _sparse((8192,), 0.02, torch.bfloat16)),
            ("f64", _sparse((8192,), 0.02, torch.float64)),
            ("mask", (torch.rand(8192) < 0.03).float()),
            ("bool", torch.rand(8192) < 0.01),
            ("ints", (torch.rand(8192) < 0.01).long() * 3),
            ("dense", torch.randn(8192)),
            ("small", torch.zeros(10)),
        ]
    )
    state._metadata = {"": {"version": 1}}
    ckpt = {"model": state, "groups": [{"params": [0, 1]}], "pair": (1, torch.zeros(5000))}
    encoded = se.encode(ckpt)
    assert se.MARK in encoded["model"]["w"] and se.MARK in encoded["pair"][1]
    assert encoded["model"]["dense"] is state["dense"]  # not worth encoding: kept as it is
    assert encoded["model"]["mask"]["constant"] and encoded["model"]["mask"]["values"].numel() == 1
    back = se.decode(_through_file(encoded)[0], 10**9)
    assert back["model"]._metadata == state._metadata
    _same(ckpt, back)


def test_zeros_come_back_positive_and_equal():
    t = torch.full((8192,), -0.0)
    assert torch.signbit(t).all()
    back = se.decode(se.encode({"t": t}), 10**9)["t"]
    assert torch.equal(back, t) and not torch.signbit(back).any()


def test_a_weight_its_momentum_and_its_mask_share_one_bitmap():
    w = _sparse((512, 512, 3, 3), 0.02)
    mask = (w != 0).float()
    momentum = torch.randn(w.shape) * mask
    dense_bytes = _through_file({"w": w})[1]
    one = _through_file(se.encode({"w": w}))[1]
    three = _through_file(se.encode({"w": w, "mask": mask, "momentum": momentum}))[1]
    assert one < 0.2 * dense_bytes
    bitmap, values = w.numel() / 8, 4 * int(mask.sum())
    # the second and third tensors add their values only (the mask: one value)
    assert three - one < 1.1 * values + 4096
    assert three < 1.1 * (bitmap + 2 * values) + 8192


def _entry(numel=8192, nnz=3):
    bits = torch.zeros(numel, dtype=torch.bool)
    bits[:nnz] = True
    return {
        se.MARK: 1,
        "shape": [numel],
        "bitmap": se.pack_bits(bits),
        "values": torch.ones(nnz),
        "constant": False,
    }


@pytest.mark.parametrize(
    "change, says",
    [
        ({"shape": [8193]}, "bitmap does not fit"),
        ({"shape": [True]}, "mistyped"),
        ({"shape": [-8192]}, "mistyped"),
        ({"values": torch.ones(4)}, "values do not match"),
        ({"constant": True}, "values do not match"),
        ({"bitmap": torch.zeros(1024, dtype=torch.int32)}, "mistyped"),
        ({"extra": 1}, "mistyped"),
        ({"values": torch.ones(3, dtype=torch.complex64)}, "mistyped"),
    ],
)
def test_malformed_entries_are_refused(change, says):
    with pytest.raises(se.EncodingError, match=says):
        se.decode({"t": {**_entry(), **change}}, 10**9)


def test_one_bitmap_named_many_times_cannot_expand_past_the_budget():
    entry = _entry(numel=2**20, nnz=0)
    many = [entry] * 64  # 64 MiB of float32 from one 128 KiB bitmap
    assert len(se.decode(many, 2**28)) == 64
    with pytest.raises(se.EncodingError, match="expand to more"):
        se.decode(many, 2**25)


def test_a_hostile_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "checkpoint.pt"
    # ten 64 MiB float64 tensors from one 1 MiB bitmap: the file passes the check of
    # repeated views (its slack), its expansion does not
    entry = {**_entry(numel=2**23, nnz=0), "values": torch.ones(0, dtype=torch.float64)}
    save_tensors(path, {"format_version": 3, "model": {str(i): entry for i in range(10)}})
    with pytest.raises(ValueError, match=r"is not one this program wrote: .*expand to more"):
        read_checkpoint(path)
    save_tensors(path, {"format_version": 3, "model": {"w": {**_entry(), "shape": "no"}}})
    with pytest.raises(ValueError, match="missing or mistyped fields; rm"):
        read_checkpoint(path, fix=f"rm {path}")


@pytest.mark.parametrize("rep, method", [("ip", "snip"), ("sp", "rigl")])
def test_a_pruned_run_resumes_from_its_compact_checkpoint_as_if_never_stopped(
    rep, method, tmp_path
):
    from interspace_pruning import data

    ds = data.get("digits", train_subset=256, test_subset=64)
    cfg = RunConfig(
        data=DataConfig(dataset="digits"),
        model=ModelConfig(model="convnet"),
        prune=PruneConfig(representation=rep, method=method, sparsity=0.95),
        train=TrainConfig(epochs=2, batch_size=32, seed=3),
        options={"dst": {"interval": 3}},
    )
    run(cfg, tmp_path / "straight", dataset=ds, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", dataset=ds, progress=False, callbacks=[Crash(11)])
    raw = load_tensors(tmp_path / "b" / "checkpoint.pt")
    encoded = [k for k, v in raw["model"].items() if isinstance(v, dict) and se.MARK in v]
    assert encoded, "the pruned layers' tensors are stored compactly"
    run(cfg, tmp_path / "b", dataset=ds, progress=False, resume=True)
    assert _metrics(tmp_path / "b" / "metrics.jsonl") == _metrics(
        tmp_path / "straight" / "metrics.jsonl"
    )
    _same_models(tmp_path / "b", tmp_path / "straight")
