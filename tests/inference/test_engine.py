import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.inference import SparseIPConv2d, SparseSPConv2d, native, sparse_inference

from ..conftest import MixedNet, prune_randomly


def _pruned(representation, sparsity=0.85, seed=0):
    torch.manual_seed(seed)
    return prune_randomly(MixedNet(), representation, sparsity, seed)


BACKENDS = [
    "torch",
    pytest.param(
        "native",
        marks=pytest.mark.skipif(not native.available(), reason="native kernel not built"),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("representation", ["sp", "ip"])
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 3, 17, 13), (5, 3, 9, 24)])
def test_sparse_engine_equals_training_forward(backend, representation, shape):
    model = _pruned(representation)
    engine = sparse_inference(model, mode="sparse", backend=backend)
    assert engine.stem.kernel == (backend == "native")
    assert set(engine.plan.values()) == {"sparse"}
    kind = SparseIPConv2d if representation == "ip" else SparseSPConv2d
    for name in ("stem", "dilated", "grouped", "depthwise", "nonsquare", "tall"):
        assert isinstance(getattr(engine, name), kind), name
    x = torch.randn(*shape)
    with torch.no_grad():
        expected, got = model(x), engine(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_dense_mode_builds_no_sparse_module(monkeypatch):
    from interspace_pruning.inference import engine

    def boom(*a):
        raise AssertionError("a sparse module was built")

    monkeypatch.setattr(engine, "_sparse_module", boom)
    out = sparse_inference(_pruned("sp"), mode="dense")
    assert set(out.plan.values()) == {"dense"}


def test_auto_mode_measures_and_dense_mode_folds():
    model = _pruned("ip", sparsity=0.5)
    x = torch.randn(4, 3, 16, 16)
    auto = sparse_inference(model, example=x, repeats=2)
    assert set(auto.plan) == {e.name for e in ip.prunable(model)}
    assert set(auto.plan.values()) <= {"sparse", "dense"}
    assert torch.allclose(auto(x), model(x), rtol=1e-4, atol=1e-5)
    dense = sparse_inference(model, mode="dense")
    assert set(dense.plan.values()) == {"dense"} and type(dense.stem) is nn.Conv2d
    thresholds = sparse_inference(_pruned("sp", sparsity=0.99))  # no example: FLOP rule
    assert "sparse" in thresholds.plan.values()


@pytest.mark.parametrize("fastest", ["dense", "sparse", "per-layer"])
def test_auto_mode_returns_the_fastest_whole_model(monkeypatch, fastest):
    """auto mode never returns a model slower than the dense one *as measured*: the
    per-layer plan is checked whole against all-dense and all-sparse (timer stubbed, so
    the test checks the choice, not this machine's speed)."""
    from interspace_pruning.inference import engine

    seen = {}
    per_layer = iter([0.5, 1.0])  # only the first layer's sparse path "measures" faster

    def fake_times(modules, x, rounds, settle=0.05):
        if "per-layer" not in modules:  # one layer, sparse vs dense: a mixed plan
            return {"sparse": next(per_layer, 2.0), "dense": 1.0}
        seen.update(modules)
        return {k: (0.001 if k == fastest else 0.002) for k in modules}

    monkeypatch.setattr(engine.timing, "interleaved_medians", fake_times)
    model = _pruned("ip", sparsity=0.5)
    x = torch.randn(2, 3, 16, 16)
    out = sparse_inference(model, example=x, repeats=1)
    assert set(seen) == {"per-layer", "dense", "sparse"}
    expected = {"sparse", "dense"} if fastest == "per-layer" else {fastest}
    assert set(out.plan.values()) == expected
    assert out.auto_timings[fastest] == 1.0
    assert torch.allclose(out(x), model(x), rtol=1e-4, atol=1e-5)


def test_interleaved_times_alternates_blocks_of_calls():
    calls = []
    mods = {k: nn.Identity() for k in "ab"}
    for k, m in mods.items():
        m.register_forward_hook(lambda m, i, o, k=k: calls.append(k))
    from interspace_pruning.inference.timing import interleaved_medians

    times = interleaved_medians(mods, torch.zeros(1), 3)
    # a first call each, then per block one untimed call and the timed ones
    assert calls == ["a", "b"] + ["a"] * 4 + ["b"] * 4 and set(times) == {"a", "b"}
    from interspace_pruning.inference.timing import interleaved_times

    calls.clear()
    wall, cpu = interleaved_times(mods, torch.zeros(1), 7, block=5)
    assert calls == ["a", "b"] + ["a"] * 6 + ["b"] * 6 + ["a"] * 3 + ["b"] * 3
    assert len(wall["a"]) == len(cpu["b"]) == 7


def test_engine_errors():
    with pytest.raises(ValueError, match="has no masks"):
        sparse_inference(MixedNet())
    with pytest.raises(ValueError, match="mode must be"):
        sparse_inference(_pruned("sp"), mode="fast")
    with pytest.raises(ValueError, match="backend must be"):
        sparse_inference(_pruned("sp"), backend="cuda")


@pytest.mark.skipif(not native.available(), reason="native kernel not built")
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_native_path_matches_torch_path(representation):
    """On 1 and 2 threads; with few pixels (narrow tiles, output channels split across
    threads), and pixel counts that are not a whole number of tiles."""
    model = _pruned(representation, sparsity=0.95)
    fast = sparse_inference(model, mode="sparse", backend="native")
    slow = sparse_inference(model, mode="sparse", backend="torch")
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            for shape in [(1, 3, 4, 4), (1, 3, 9, 9), (3, 3, 11, 7), (2, 3, 32, 32)]:
                x = torch.randn(*shape)
                assert fast.stem(x).is_contiguous()
                assert torch.allclose(fast(x), slow(x), rtol=1e-4, atol=1e-5), (n, shape)
    finally:
        torch.set_num_threads(threads)


def test_tap_index_matches_unfold():
    """The kernel's tap table reads exactly the pixels ``F.unfold`` reads (padding is -1), and
    its runs mark exactly the 16-pixel chunks that are one contiguous read."""
    x = torch.arange(1.0, 2 * 2 * 9 * 20 + 1).view(2, 2, 9, 20)
    kernel, stride, padding, dilation = (3, 2), (2, 1), (1, 2), (2, 1)
    index, runs, oh, ow = native.tap_index(2, 2, (9, 20), kernel, stride, padding, dilation)
    length, ld = 2 * oh * ow, index.shape[1]
    assert ld % 64 == 0 and ld % 256 != 0 and ld >= length
    flat = torch.cat([torch.zeros(1), x.flatten()])  # position -1 reads the 0
    got = flat[index[:, :length].long() + 1].view(6, 2, oh * ow).transpose(0, 1)
    expected = torch.nn.functional.unfold(x[:, :1], kernel, dilation, padding, stride)
    assert torch.equal(got, expected)
    chunks = index.view(6, -1, 16).long()
    for t in range(6):
        for q in range(chunks.shape[1]):
            valid = chunks[t, q] >= 0
            if runs[t, q] != native.GATHER:
                assert torch.equal(chunks[t, q][valid], runs[t, q] + torch.arange(16)[valid])
            else:
                starts = (chunks[t, q] - torch.arange(16))[valid]
                assert starts.unique().numel() > 1
    assert (runs != native.GATHER).any() and (runs == native.GATHER).any()


@pytest.mark.skipif(not native.available(), reason="needs the native kernel")
def test_kernel_layers_hold_one_copy_of_the_weights():
    """On the native kernel a sparse layer keeps only the kernel's arrays; the torch CSR
    matrix (for the fallback path) is rebuilt on demand, exactly."""
    model = _pruned("ip", sparsity=0.9)
    engine = sparse_inference(model, mode="sparse", backend="native", fuse_epilogue=False)
    conv = engine.stem
    assert conv._csr is None
    rebuilt = conv.matrix.to_dense()
    ref = sparse_inference(model, mode="sparse", backend="torch", fuse_epilogue=False).stem
    assert torch.equal(rebuilt, ref.matrix.to_dense())
    x = torch.randn(2, 3, 16, 16)
    y = conv(x)
    conv.kernel = False  # the torch fallback computes with the rebuilt CSR matrix
    assert torch.allclose(conv(x), y, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not native.available(), reason="needs the native kernel")
def test_fused_engine_keeps_containers_indexable():
    """After the epilogue rewrite (an fx.GraphModule) ``features[i]`` still indexes the
    model's own Sequential, whose sparse layers carry the fused ReLU / pool."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3)
            )

        def forward(self, x):
            return self.features(x).mean((2, 3))

    torch.manual_seed(0)
    model = ip.to_interspace(Net().eval())
    ip.prune(model, "random", 0.8, allocation="uniform")
    engine = sparse_inference(model, mode="sparse", backend="native")
    assert "features.0" in engine.fused_epilogue
    assert type(engine.features) is nn.Sequential
    assert engine.features[0].fuse_relu and engine.features[0].fuse_pool
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(engine(x), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="features holds layers fused"):
        engine.features(x)  # its own forward would apply the fused ReLU and pool twice
