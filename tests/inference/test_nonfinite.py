"""NaN and infinities: the sparse engine gives torch's answer, pattern and all.

The reference is the folded dense model (``fold(model)``). Dense torch multiplies every input
by every weight, pruned (zero) ones included, and ``0 * nan`` and ``0 * inf`` are NaN: one
non-finite pixel makes every output whose receptive field holds it non-finite, in every output
channel. The engine must give the same pattern (which outputs are NaN, +inf, -inf, finite)
exactly, and the finite values to round-off, on every kernel path this CPU can run and on the
torch backend, through every fused epilogue (bias / folded BatchNorm, residual add, ReLU,
2x2 max-pool). Three sources of non-finite values are covered: the input (the kernel then
declines the layer and the module computes it densely, as torch does), a residual operand (the
kernel's fused add and ReLU see it), and infinite weights on a finite input (the kernel's
products make inf and NaN that its ReLU and max-pool see).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import interspace_pruning as ip
from interspace_pruning.inference import native, sparse_inference

from ..conftest import MixedNet, prune_randomly
from .test_kernel_paths import ALL_PATHS, PATHS, ResidualPoolNet

NAN, INF = float("nan"), float("inf")
BIG = torch.finfo(torch.float32).max


def _pattern(t: torch.Tensor) -> torch.Tensor:
    """0 finite, 1 NaN, 2 +inf, 3 -inf."""
    kind = torch.zeros(t.shape, dtype=torch.uint8)
    kind[t.isnan()] = 1
    kind[t == INF] = 2
    kind[t == -INF] = 3
    return kind


def _assert_same(got: torch.Tensor, expected: torch.Tensor, what: object) -> None:
    """The same non-finite pattern, element by element, and close finite values."""
    assert got.shape == expected.shape, what
    pg, pe = _pattern(got), _pattern(expected)
    wrong = (pg != pe).nonzero()
    names = ("finite", "nan", "+inf", "-inf")
    assert wrong.numel() == 0, (
        f"{what}: {len(wrong)} of {got.numel()} outputs differ in kind, first at "
        f"{wrong[0].tolist()}: engine {names[pg[tuple(wrong[0])]]} "
        f"({got[tuple(wrong[0])].item()}), torch {names[pe[tuple(wrong[0])]]}; torch has "
        f"{int((pe == 1).sum())} NaN, {int((pe >= 2).sum())} inf, the engine "
        f"{int((pg == 1).sum())} NaN, {int((pg >= 2).sum())} inf"
    )
    finite = pe == 0
    a, b = got[finite], expected[finite]
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * scale), what


class OneConv(nn.Module):
    """One convolution and the epilogue ``kind`` names, so that every output pixel shows."""

    def __init__(self, kind: str, channels: int = 6) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if "res" in self.kind:
            y = y + x
        if "relu" in self.kind:
            y = torch.relu(y)
        if "pool" in self.kind:
            y = self.pool(y)
        return y


EPILOGUES = ("none", "relu", "pool", "relu_pool", "res_relu")


class MapNet(nn.Module):
    """A feature map out: conv-BN-ReLU, a residual block (conv-BN + identity, ReLU),
    conv-ReLU-max-pool, a strided conv and a last conv with nothing after it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.conv1(x))
        x = F.relu(self.bn2(self.conv2(y)) + x)
        x = self.pool(F.relu(self.mid(x)))
        return self.head(torch.relu(self.down(x)))


def _inputs(shape: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """All-NaN, one NaN pixel, one +inf / -inf pixel, and a mix (an image corner, an
    edge, +inf next to -inf); the other samples of the batch stay finite."""
    b, c, h, w = shape
    x0 = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    cases = {"all nan": torch.full(shape, NAN)}
    for name, value, at in (
        ("nan pixel", NAN, (0, c - 1, h // 2, w // 3)),
        ("+inf pixel", INF, (0, 0, 1, w - 2)),
        ("-inf pixel", -INF, (b - 1, c // 2, h - 3, 2)),
    ):
        x = x0.clone()
        x[at] = value
        cases[name] = x
    x = x0.clone()
    x[0, 0, 0, 0] = NAN
    x[b - 1, c - 1, h - 1, w // 2] = INF
    x[0, c // 2, h // 2, 4], x[0, c // 2, h // 2, 5] = INF, -INF
    cases["mixed"] = x
    return cases


def _check_model(model: nn.Module, shapes, backend: str, what: object) -> nn.Module:
    reference = ip.fold(model).eval()
    engine = sparse_inference(model, mode="sparse", backend=backend)
    assert set(engine.plan.values()) == {"sparse"}
    for shape in shapes:
        for name, x in _inputs(shape).items():
            with torch.no_grad():
                _assert_same(engine(x), reference(x), (what, shape, name))
    return engine


def _kernel_path(monkeypatch, path: str | None) -> str:
    """Force ``path`` (None: the torch backend); returns the backend to build with."""
    if path is None:
        return "torch"
    monkeypatch.setenv(native.PATH_ENV, path)
    return "native"


def _why_not(path: str) -> str:
    if not native.available():
        return "native kernel not built"
    if path == "neon":
        return "neon is aarch64's (test_kernel_paths runs it under qemu-user, NaN cases too)"
    return f"this CPU cannot run the {path} path"


KERNEL_PATHS = [
    pytest.param(p, marks=pytest.mark.skipif(p not in PATHS, reason=_why_not(p))) for p in ALL_PATHS
]
ON = [*KERNEL_PATHS, pytest.param(None, id="torch")]


@pytest.mark.parametrize("path", ON)
@pytest.mark.parametrize("representation", ["sp", "ip"])
@pytest.mark.parametrize("kind", EPILOGUES)
def test_one_layer_nonfinite_input(monkeypatch, path, representation, kind):
    """Every fused epilogue, raw ±inf outputs included (IP: where the dense weight of a
    tap is non-zero, torch gives ±inf, never NaN); 16x16 max-pools in the kernel, 10x6
    with torch."""
    backend = _kernel_path(monkeypatch, path)
    model = prune_randomly(OneConv(kind), representation, 0.6)
    engine = _check_model(model, [(2, 6, 16, 16), (3, 6, 10, 6)], backend, kind)
    if backend == "native":
        assert engine.conv.fuse_relu == ("relu" in kind)
        assert engine.conv.fuse_pool == ("pool" in kind)
        assert engine.conv.fuse_residual == ("res" in kind)


@pytest.mark.parametrize("path", ON)
@pytest.mark.parametrize("representation", ["sp", "ip"])
@pytest.mark.parametrize("net", [MapNet, ResidualPoolNet, MixedNet])
def test_networks_nonfinite_input(monkeypatch, path, representation, net):
    """Whole networks: a feature map (MapNet) and logits (through a pruned Linear); MixedNet
    has strided, dilated, grouped, depthwise, non-square and 1x1 convolutions."""
    backend = _kernel_path(monkeypatch, path)
    model = prune_randomly(net(), representation, 0.8)
    shapes = [(2, 3, 16, 16)] if net is not ResidualPoolNet else [(2, 3, 32, 32), (2, 3, 12, 10)]
    _check_model(model, shapes, backend, net.__name__)


def test_pruned_linear_nonfinite_input():
    """A NaN / inf feature reaches every logit in torch (``0 * nan``), pruned weights too."""
    model = prune_randomly(nn.Sequential(nn.Flatten(), nn.Linear(12, 7)), "sp", 0.7)
    reference = ip.fold(model).eval()
    engine = sparse_inference(model, mode="sparse", backend="torch")
    x = torch.randn(4, 3, 2, 2)
    x[0, 1, 0, 1], x[1, 0, 1, 1], x[2, 2, 0, 0] = NAN, INF, -INF
    with torch.no_grad():
        _assert_same(engine(x), reference(x), "linear")


class ResidualInput(nn.Module):
    """``relu(conv(x[:, :3]) + x[:, 3:])`` with the last channels as the residual: a
    non-finite residual reaches the kernel's fused add and ReLU while the convolution's own
    input stays finite."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x[:, :3]) + x[:, 3:])


@pytest.mark.parametrize("path", ON)
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_nonfinite_residual(monkeypatch, path, representation):
    backend = _kernel_path(monkeypatch, path)
    model = prune_randomly(ResidualInput(), representation, 0.5)
    reference = ip.fold(model).eval()
    engine = sparse_inference(model, mode="sparse", backend=backend)
    if backend == "native":
        assert engine.conv.fuse_residual and engine.conv.fuse_relu
    x = torch.randn(2, 7, 9, 11, generator=torch.Generator().manual_seed(1))
    x[0, 3:, 0, :4] = torch.tensor([NAN, INF, -INF, NAN])  # one per residual channel
    x[1, 3:, 4, 4:8] = torch.tensor([-INF, NAN, INF, -INF])
    x[1, 5] = NAN
    with torch.no_grad():
        _assert_same(engine(x), reference(x), "residual")


def _infinite_weights(kind: str, seed: int = 0) -> nn.Module:
    """OneConv (SP), the centre taps of some filters kept and +-inf: on a finite input the
    kernel computes the layer itself and makes +-inf (inf * x) and NaN (inf * 0 where the
    input is 0, inf - inf) at pixels of its own, the same ones in any summation order. (Only
    centre taps: torch's convolution skips the zero padding, where the kernel multiplies it
    as 0, which differs for an infinite weight only.)"""
    model = prune_randomly(OneConv(kind, channels=4), "sp", 0.5, seed)
    entry = next(e for e in ip.prunable(model) if e.name == "conv")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        pick = torch.rand(4, 4, generator=g) < 0.3
        sign = torch.where(torch.rand(4, 4, generator=g) < 0.5, INF, -INF)
        entry.mask[:, :, 1, 1][pick] = 1.0
        entry.param[:, :, 1, 1][pick] = sign[pick]
    return model


@pytest.mark.parametrize("path", KERNEL_PATHS)
@pytest.mark.parametrize("kind", EPILOGUES)
def test_nonfinite_made_inside_the_kernel(monkeypatch, path, kind):
    """Finite input, so the kernel computes the layer: its ReLU must keep NaN (``relu(nan) =
    nan``, ``relu(-inf) = 0``) and its max-pool must return NaN when the window holds one, as
    torch's do. (Overflow of finite sums is left out: which sums reach inf, and so inf - inf,
    depends on the summation order, in torch as anywhere.)"""
    monkeypatch.setenv(native.PATH_ENV, path)
    for seed in range(3):
        model = _infinite_weights(kind, seed)
        reference = ip.fold(model).eval()
        engine = sparse_inference(model, mode="sparse", backend="native")
        assert engine.conv.fuse_pool == ("pool" in kind) and engine.conv.kernel
        g = torch.Generator().manual_seed(seed)
        for shape in ((2, 4, 16, 16), (1, 4, 12, 10)):
            x = torch.randn(*shape, generator=g)
            x[torch.rand(shape, generator=g) < 0.1] = 0.0
            with torch.no_grad():
                expected = reference(x)
                assert expected.isnan().any() and expected.isfinite().any()
                if kind == "none":
                    assert (expected == INF).any() and (expected == -INF).any()
                _assert_same(engine(x), expected, (kind, seed, shape))


def _kernel_call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``native.sparse_conv`` of ``layer``'s arrays on ``x``, ReLU fused."""
    index, runs, oh, ow = layer._index(x)
    return native.sparse_conv(
        x, index, runs, (oh, ow), layer._basis, layer._used_count, layer._used_rows,
        layer._rowptr, layer._cols, layer._vals, layer._bias, relu=True,
    )  # fmt: skip


@pytest.mark.parametrize("path", KERNEL_PATHS)
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_kernel_flags_nonfinite_input(monkeypatch, path, value):
    """``native.sparse_conv`` returns None when the input holds a NaN or an infinity
    anywhere, first and last element included; finite extremes pass."""
    monkeypatch.setenv(native.PATH_ENV, path)
    model = prune_randomly(OneConv("relu", channels=3), "ip", 0.5)
    layer = sparse_inference(model, mode="sparse", backend="native").conv
    for shape in ((1, 3, 5, 7), (3, 3, 16, 16)):
        x = torch.randn(shape)
        assert _kernel_call(layer, x) is not None
        for at in (0, x.numel() - 1, x.numel() // 2 + 1):
            bad = x.clone()
            bad.view(-1)[at] = value
            assert _kernel_call(layer, bad) is None, (shape, at)
        extreme = x.clone()
        extreme.view(-1)[::3] = BIG
        assert _kernel_call(layer, extreme) is not None


GEOMETRIES = [  # (conv, input shape): partial and multi-image tiles, strides, dilation, groups
    (nn.Conv2d(3, 5, 3, padding=1), (1, 3, 5, 7)),
    (nn.Conv2d(4, 6, 3, stride=2, padding=1), (3, 4, 9, 8)),
    (nn.Conv2d(3, 4, 1, stride=2), (2, 3, 7, 6)),  # some pixels no output reads
    (nn.Conv2d(2, 4, (3, 5), dilation=2), (2, 2, 12, 14)),
    (nn.Conv2d(4, 6, 3, padding=1, groups=2), (1, 4, 6, 6)),
    (nn.Conv2d(6, 8, 3, padding=1), (2, 6, 16, 16)),
]


@pytest.mark.parametrize("path", KERNEL_PATHS)
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_flags_nan_at_every_input_position(monkeypatch, path, threads):
    """The input check is split over the tiles (and over the tasks of a tile whose output
    channels are split): a NaN anywhere in the input is found, whichever tile owns it."""
    monkeypatch.setenv(native.PATH_ENV, path)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i, (conv, shape) in enumerate(GEOMETRIES):
            model = prune_randomly(nn.Sequential(copy.deepcopy(conv)), ("sp", "ip")[i % 2], 0.6)
            layer = sparse_inference(model, mode="sparse", backend="native")[0]
            x = torch.randn(shape, generator=torch.Generator().manual_seed(i))
            assert _kernel_call(layer, x) is not None
            for at in range(x.numel()):
                bad = x.clone()
                bad.view(-1)[at] = NAN
                assert _kernel_call(layer, bad) is None, (conv, shape, at)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize(
    "backend",
    ["torch", pytest.param("native", marks=pytest.mark.skipif(not PATHS, reason="no kernel"))],
)
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_dense_weight_is_the_folded_weight(backend, representation):
    """The weight a sparse layer computes a non-finite input with: the folded model's (here
    with its BatchNorm fused, as the engine's), zero exactly where that one is."""
    model = prune_randomly(MixedNet(), representation, 0.8)
    engine = sparse_inference(model, mode="sparse", backend=backend)
    dense = sparse_inference(model, mode="dense")
    layers = {n: m for n, m in engine.named_modules() if hasattr(m, "dense_weight")}
    assert len(layers) == 7  # every convolution of MixedNet
    for name, layer in layers.items():
        got, expected = layer.dense_weight(), dense.get_submodule(name).weight.detach()
        assert got.shape == expected.shape, name
        assert torch.equal(got == 0, expected == 0), name
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), name
