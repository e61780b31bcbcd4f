"""Every kernel path of the native binary computes the same function as dense torch.

Each path this CPU can run is forced through ``INTERSPACE_KERNEL_PATH`` and compared with the
training forward (dense), and with the other paths. Paths this CPU lacks are skipped (e.g.
``avx512`` on an AVX2-only machine). The aarch64 ``neon`` path is cross-compiled and run under
qemu-user when Debian's ``gcc-aarch64-linux-gnu`` and ``qemu-user`` are installed; that checks
its results only, never its speed. The harness cases include NaN and infinities: an input
holding one is declined (status 1) on every path, and a non-finite residual, and infinite
weights on a finite input, come out of the fused add, ReLU and max-pool as torch's would
(test_nonfinite.py checks the same through the engine).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interspace_pruning.inference import native, sparse_inference

from ..conftest import MixedNet, prune_randomly

ALL_PATHS = ("avx512", "avx2", "neon", "scalar")
PATHS = native.available_paths()
needs_kernel = pytest.mark.skipif(not native.available(), reason="native kernel not built")


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    return torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, expected.abs().max()))


class ResidualPoolNet(nn.Module):
    """conv-BN-ReLU, a residual block (conv-BN + identity, then ReLU), max-pool, conv-ReLU-
    max-pool, a strided conv plus a broadcast "residual" the kernel cannot take, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.down = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.offset = nn.Parameter(torch.randn(1, 24, 1, 1))
        self.fc = nn.Linear(24, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.conv1(x))
        x = F.relu(self.bn2(self.conv2(y)) + x)
        x = self.pool(x)
        x = self.pool2(F.relu(self.mid(x)))
        x = torch.relu(self.down(x) + self.offset)
        return self.fc(x.mean((2, 3)))


_pruned = prune_randomly


@pytest.fixture
def threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def _outputs(engine: nn.Module, shapes, seed: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    outs = []
    with torch.no_grad():
        for n in (1, 2):
            torch.set_num_threads(n)
            outs += [engine(torch.randn(*s, generator=g)) for s in shapes]
    return outs


MIXED_SHAPES = [(b, 3, h, w) for b, h, w in ((1, 16, 16), (2, 17, 13), (3, 9, 24), (4, 8, 8))]
MIXED_SHAPES.append((5, 3, 32, 32))


@needs_kernel
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_each_path_equals_dense(monkeypatch, threads, path, representation):
    """Strided, dilated, grouped, depthwise, non-square and 1x1 convolutions (MixedNet),
    batch 1 to 5, on 1 and 2 threads."""
    monkeypatch.setenv(native.PATH_ENV, path)
    model = _pruned(MixedNet(), representation, 0.85)
    engine = sparse_inference(model, mode="sparse", backend="native")
    assert engine.kernel_path == path == native.kernel_path()
    assert f"kernel_path={path}" in repr(engine.stem)
    expected = _outputs(model, MIXED_SHAPES)
    for got, exp in zip(_outputs(engine, MIXED_SHAPES), expected, strict=True):
        assert _close(got, exp)


@needs_kernel
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_each_path_fuses_residual_relu_and_pool_inputs(monkeypatch, threads, path, representation):
    """The fused epilogue (bias/folded BN, residual add, ReLU) before a max-pool, and a
    broadcast residual that the kernel cannot take (the module adds it with torch)."""
    monkeypatch.setenv(native.PATH_ENV, path)
    model = _pruned(ResidualPoolNet(), representation, 0.7)
    engine = sparse_inference(model, mode="sparse", backend="native")
    assert set(engine.fused_epilogue) == {"stem", "conv1", "conv2", "mid", "down"}
    assert engine.conv2.fuse_residual and engine.conv2.fuse_relu and not engine.conv2.fuse_pool
    assert engine.mid.fuse_relu and engine.mid.fuse_pool
    # down's residual broadcasts: taken over by the module, added by torch at run time
    assert engine.down.fuse_relu and engine.down.fuse_residual
    # 32x32: mid pools in the kernel (whole row pairs per tile); 12x10 and 20x12: with torch
    shapes = [(b, 3, 12, 10) for b in range(1, 6)] + [(1, 3, 32, 32), (2, 3, 32, 32)]
    shapes.append((3, 3, 20, 12))
    assert native.can_pool(2, (16, 16)) and not native.can_pool(2, (6, 5))
    for got, exp in zip(_outputs(engine, shapes), _outputs(model, shapes), strict=True):
        assert _close(got, exp)
    plain = sparse_inference(model, mode="sparse", backend="native", fuse_epilogue=False)
    assert plain.fused_epilogue == [] and not plain.conv2.fuse_relu


@needs_kernel
@pytest.mark.skipif(len(PATHS) < 2, reason="one kernel path on this CPU")
@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_paths_agree_with_each_other(monkeypatch, threads, representation):
    model = _pruned(ResidualPoolNet(), representation, 0.9, seed=1)
    shapes = [(2, 3, 16, 16), (1, 3, 7, 9)]
    results = {}
    for path in PATHS:
        monkeypatch.setenv(native.PATH_ENV, path)
        results[path] = _outputs(sparse_inference(model, mode="sparse"), shapes)
    first = results[PATHS[0]]
    for path in PATHS[1:]:
        for a, b in zip(results[path], first, strict=True):
            assert _close(a, b), path


@needs_kernel
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzzed_geometries_on_each_path(monkeypatch, threads, path):
    """Random kernel sizes, strides, dilations, paddings, groups, sparsities and inputs."""
    monkeypatch.setenv(native.PATH_ENV, path)
    g = torch.Generator().manual_seed(7)

    def pick(*options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    for case in range(10):
        groups = pick(1, 1, 2)
        cin, cout = groups * pick(1, 3, 5), groups * pick(1, 4, 7)
        k = (pick(1, 2, 3, 5), pick(1, 3, 4))
        conv = nn.Conv2d(
            cin, cout, k, stride=(pick(1, 2, 3), pick(1, 2)), padding=(pick(0, 1, 2), pick(0, 2)),
            dilation=(pick(1, 2), pick(1, 2)), groups=groups, bias=bool(pick(0, 1)),
        )  # fmt: skip
        representation = pick("sp", "ip")
        model = _pruned(nn.Sequential(conv, nn.ReLU()), representation, pick(0.3, 0.8, 0.97))
        engine = sparse_inference(model, mode="sparse", backend="native")
        h = int(torch.randint(k[0] * 2 + 3, 20, (1,), generator=g))
        w = int(torch.randint(k[1] * 2 + 3, 20, (1,), generator=g))
        for b in (1, 3):
            x = torch.randn(b, cin, h, w, generator=g)
            with torch.no_grad():
                assert _close(engine(x), model(x)), (case, conv, representation, x.shape)


@needs_kernel
@pytest.mark.parametrize("path", [p for p in ALL_PATHS if p not in PATHS])
def test_forcing_a_missing_path_is_an_error(monkeypatch, path):
    monkeypatch.setenv(native.PATH_ENV, path)
    with pytest.raises(ValueError, match="not a kernel path this CPU can run"):
        native.kernel_path()
    monkeypatch.setenv(native.PATH_ENV, "fastest")
    with pytest.raises(ValueError, match="INTERSPACE_KERNEL_PATH=fastest"):
        native.kernel_path()


# ---- the standalone harness: the same kernel source built for another architecture --------

HARNESS = Path(__file__).parent / "native" / "kernel_harness.c"


def _case_file(path: Path, module: nn.Module, x: torch.Tensor, residual: torch.Tensor | None):
    """The harness's input for one sparse layer (see kernel_harness.c) and its output shape."""
    index, runs, oh, ow = module._index(x)
    p = oh * ow
    header = [
        x.shape[1], x.shape[2] * x.shape[3], index.shape[1], index.shape[0],
        module._used_rows.shape[1], module.out_channels, x.shape[0] * p, p,
        int(module.fuse_relu), int(module._basis is not None), int(residual is not None),
        ow if module.fuse_pool else 0,
    ]  # fmt: skip
    arrays = [
        index, runs, module._basis, module._used_count, module._used_rows, module._rowptr,
        module._cols, module._vals, module._bias, residual, x.contiguous(),
    ]  # fmt: skip
    with open(path, "wb") as f:
        f.write(struct.pack("<12q", *header))
        for a in arrays:
            data = b"" if a is None else a.contiguous().numpy().tobytes()
            f.write(struct.pack("<q", len(data)) + data)
    if module.fuse_pool:
        return (x.shape[0], module.out_channels, oh // 2, ow // 2)
    return (x.shape[0], module.out_channels, oh, ow)


def _harness_results(binary: list[str], case: Path, out: Path, count: int) -> dict:
    """Per "path/threads": ``(status, output)`` (status 1: the input held NaN or inf)."""
    subprocess.run([*binary, str(case), str(out)], check=True, timeout=300)
    data, results = out.read_bytes(), {}
    step = 24 + 4 * count
    for at in range(0, len(data), step):
        name = data[at : at + 16].rstrip(b"\0").decode()
        (status,) = struct.unpack("<q", data[at + 16 : at + 24])
        y = torch.frombuffer(bytearray(data[at + 24 : at + step]), dtype=torch.float32)
        results[name] = (status, y)
    return results


def _harness_run(tmp_path, binary, layer, x, residual, expected_paths) -> dict:
    """Each path's ``(status, output)`` for ``layer`` (its fuse flags set) on ``x``."""
    shape = _case_file(tmp_path / "case.bin", layer, x, residual)
    count = torch.Size(shape).numel()
    results = _harness_results(binary, tmp_path / "case.bin", tmp_path / "out.bin", count)
    assert {n.split("/")[0] for n in results} == expected_paths
    return {n: (status, y.view(shape)) for n, (status, y) in results.items()}


def _epilogue(layer, plain, residual):
    """torch's residual add, ReLU and max-pool, as ``layer``'s flags ask."""
    expected = plain + (residual if residual is not None else 0)
    if layer.fuse_relu:
        expected = expected.relu()
    return F.max_pool2d(expected, 2) if layer.fuse_pool else expected


INF = float("inf")


def _same_nonfinite(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """The same NaN / +inf / -inf outputs, and close finite ones."""
    for kind in (torch.isnan, lambda t: t == INF, lambda t: t == -INF):
        if not torch.equal(kind(got), kind(expected)):
            return False
    finite = expected.isfinite()
    return _close(got[finite], expected[finite])


def _harness_check(tmp_path: Path, binary: list[str], expected_paths: set[str]) -> None:
    for representation in ("sp", "ip"):
        model = _pruned(ResidualPoolNet(), representation, 0.8)
        # the torch backend needs no kernel here; the layers' kernel arrays are made below
        engine = sparse_inference(model, mode="sparse", backend="torch")
        cases = (("conv2", 3, 1, 1, 0, 11, 9), ("down", 1, 1, 0, 0, 11, 9))
        cases += (("stem", 2, 0, 0, 0, 11, 9), ("mid", 2, 1, 0, 1, 16, 16))
        for name, b, relu, res, pool, h, w in cases:
            layer = engine.get_submodule(name)
            layer._prepare_kernel()
            layer.fuse_relu, layer.fuse_residual = bool(relu), bool(res)
            layer.fuse_pool = bool(pool)  # 32 pixels of 16-pixel rows: every path's tiles fit
            g = torch.Generator().manual_seed(b)
            x = torch.randn(b, layer.in_channels, h, w, generator=g)
            with torch.no_grad():
                plain = F.conv2d(
                    x, _dense_weight(model, name), _dense_bias(model, name), layer.stride,
                    layer.padding, layer.dilation,
                )  # fmt: skip
            residual = torch.randn(plain.shape, generator=g) if layer.fuse_residual else None
            expected = _epilogue(layer, plain, residual)
            results = _harness_run(tmp_path, binary, layer, x, residual, expected_paths)
            for n, (status, y) in results.items():
                assert status == 0 and _close(y, expected), (representation, name, n)
            # NaN and inf: an input holding one is declined on every path (the module then
            # computes the layer densely); a residual's go through the fused add and ReLU
            for value in (float("nan"), INF, -INF):
                bad = x.clone()
                bad.view(-1)[(3 * b) % bad.numel()] = value
                results = _harness_run(tmp_path, binary, layer, bad, residual, expected_paths)
                assert all(status == 1 for status, _ in results.values()), (name, value)
            if residual is not None:
                residual = residual.clone()
                residual.view(-1)[::7] = float("nan")
                residual.view(-1)[1::7], residual.view(-1)[2::7] = INF, -INF
                expected = _epilogue(layer, plain, residual)
                results = _harness_run(tmp_path, binary, layer, x, residual, expected_paths)
                for n, (status, y) in results.items():
                    assert status == 0 and _same_nonfinite(y, expected), (representation, name, n)
        _harness_infinite_weights(tmp_path, binary, engine, expected_paths)


def _harness_infinite_weights(tmp_path, binary, engine, expected_paths) -> None:
    """NaN and inf made inside the kernel (finite input): SP layers whose kept centre taps
    are partly +-inf, so that inf * 0 and inf - inf make NaN at some pixels; the ReLU must
    keep them and the max-pool must return them, as torch's do."""
    for name in ("mid", "conv2", "stem"):
        layer = engine.get_submodule(name)
        if layer._basis is not None:  # IP: an infinite coefficient is not an infinite weight
            return
        layer.fuse_relu, layer.fuse_residual, layer.fuse_pool = name != "stem", False, True
        vals = layer._vals
        centre = (layer._cols.long() % 9 == 4).nonzero().flatten()
        vals[centre[::3]], vals[centre[1::3]] = INF, -INF
        g = torch.Generator().manual_seed(5)
        x = torch.randn(2, layer.in_channels, 16, 16, generator=g)
        x[torch.rand(x.shape, generator=g) < 0.1] = 0.0
        plain = F.conv2d(x, layer.dense_weight(), layer.bias, layer.stride, layer.padding)
        expected = _epilogue(layer, plain, None)
        assert expected.isnan().any() and expected.isfinite().any()
        results = _harness_run(tmp_path, binary, layer, x, None, expected_paths)
        for n, (status, y) in results.items():
            assert status == 0 and _same_nonfinite(y, expected), (name, n)


def _dense_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The folded (conv + BatchNorm) weight of ``model``'s layer ``name``."""
    folded = sparse_inference(model, mode="dense")
    return folded.get_submodule(name).weight.detach()


def _dense_bias(model: nn.Module, name: str) -> torch.Tensor | None:
    folded = sparse_inference(model, mode="dense")
    b = folded.get_submodule(name).bias
    return None if b is None else b.detach()


@needs_kernel
@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_harness_on_this_machine(tmp_path):
    """The harness itself, built natively: it must see this CPU's paths and agree."""
    binary = tmp_path / "harness"
    subprocess.run(
        ["gcc", "-O2", "-fopenmp", "-std=gnu11", "-Wno-psabi", "-o", str(binary), str(HARNESS)],
        check=True,
        timeout=300,
    )
    _harness_check(tmp_path, [str(binary)], set(PATHS))


CROSS, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"


@pytest.mark.skipif(
    shutil.which(CROSS) is None or shutil.which(QEMU) is None,
    reason="needs gcc-aarch64-linux-gnu and qemu-user (apt-get install ...)",
)
def test_arm64_neon_path_under_qemu(tmp_path):
    """The aarch64 build (neon and scalar paths) under qemu-user: results only, no speed."""
    binary = tmp_path / "harness-arm64"
    subprocess.run(
        [CROSS, "-O2", "-fopenmp", "-std=gnu11", "-static", "-o", str(binary), str(HARNESS)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    _harness_check(tmp_path, [QEMU, str(binary)], {"neon", "scalar"})
