"""Coverage-guided fuzz target (atheris) for the sparse engine's input checks and kernel.

Run from the repository root (``pip install -e ".[fuzz]"`` first)::

    python fuzz/kernel_inputs.py -max_total_time=900      # corpus: fuzz/corpus/kernel_inputs/
    python fuzz/kernel_inputs.py -atheris_runs=3000 -seed=1 DIR
    python fuzz/kernel_inputs.py --show crash-...    # the model and input it stands for

Each input is decoded by a ``FuzzedDataProvider``: first a small pruned model (one
convolution of any kernel size, stride, padding, dilation and groups, SP or IP, with or
without bias, BatchNorm, residual addition, ReLU and 2x2 max-pool, then a 1x1-conv or linear
head; float32 or float64) turned into its sparse-inference form (``mode="sparse"``, native
or torch backend; built once per configuration and cached), then the kernel path
(``INTERSPACE_KERNEL_PATH``) and an input: its rank, shape (0-size and wrong channel counts
included), dtype, device (cpu or meta), layout, memory format (contiguous, channels-last,
strided slices, transposed or expanded views) and values (NaN, infinities, huge and
subnormal ones at chosen places).

The engine must agree with the pruned model it came from: both return the same shape and
dtype with close values (where the input holds NaN or an infinity only the positions finite
in both are compared: the NaN pattern is checked elsewhere), or both raise a
``RuntimeError``/``ValueError``/``TypeError``/``IndexError``, the engine's own check with a
one-line message. The engine's refusing unbatched 3-D input, an empty batch torch lets
through unchecked, and input on the meta device are the documented exceptions. Anything
else, a crash included, is a finding (``fuzz/artifacts/``). ``INTERSPACE_FUZZ_STATS=N`` prints
the commonest outcomes every N inputs.
Built models are cached, so the tap-index cache of a layer carries over between inputs; a
finding that needs that state does not reproduce from its input alone.
"""

from __future__ import annotations

import collections
import functools
import os
import sys
import traceback
import warnings
from pathlib import Path

import atheris
import torch
import torch.nn.functional as F
from torch import nn

with atheris.instrument_imports(include=["interspace_pruning"]):
    import interspace_pruning as ip
    from interspace_pruning.inference import native

from common import limit_memory, prepare_argv

PATHS = native.available_paths() or [None]
_SPECIAL = [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 0.0, 1e-40, 65504.0]
_DTYPES = [torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64]
_DTYPES += [torch.bool, torch.complex64, torch.uint8]
_KINDS = (RuntimeError, ValueError, TypeError, IndexError)


class Net(nn.Module):
    """conv [-> bn] [+ x] [-> relu] [-> 2x2 max-pool] -> head; fx-traceable."""

    def __init__(self, conv, bn: bool, residual: bool, relu: bool, pool: bool, head: str):
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels) if bn else None
        self.residual, self.relu, self.pool, self.head_kind = residual, relu, pool, head
        if head == "conv":
            self.head = nn.Conv2d(conv.out_channels, 2, 1)
        elif head == "linear":
            self.head = nn.Linear(conv.out_channels, 3)
        else:
            self.head = None

    def forward(self, x):
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        if self.residual:
            y = y + x
        if self.relu:
            y = torch.relu(y)
        if self.pool:
            y = F.max_pool2d(y, 2)
        if self.head_kind == "conv":
            y = self.head(y)
        elif self.head_kind == "linear":
            y = self.head(F.adaptive_avg_pool2d(y, 1).flatten(1))
        return y


def config(fdp: atheris.FuzzedDataProvider) -> tuple:
    groups = fdp.PickValueInList([1, 1, 2, 3])  # (out of data, each pick is its first value)
    k = (fdp.PickValueInList([3, 1, 2, 5]), fdp.PickValueInList([3, 1, 2]))
    stride = (fdp.ConsumeIntInRange(1, 3), fdp.ConsumeIntInRange(1, 3))
    padding = (fdp.ConsumeIntInRange(0, 2), fdp.ConsumeIntInRange(0, 2))
    dilation = (fdp.ConsumeIntInRange(1, 2), fdp.ConsumeIntInRange(1, 2))
    cin, cout = groups * fdp.ConsumeIntInRange(1, 3), groups * fdp.ConsumeIntInRange(1, 3)
    same = (
        cin == cout
        and stride == (1, 1)
        and all(
            kk % 2 == 1 and p == d * (kk - 1) // 2
            for kk, p, d in zip(k, padding, dilation, strict=True)
        )
    )
    rep = fdp.PickValueInList(["sp", "ip"]) if k != (1, 1) else "sp"  # 1x1: no IP form
    return (
        rep,
        k,
        stride,
        padding,
        dilation,
        groups,
        cin,
        cout,
        fdp.ConsumeBool(),  # bias
        fdp.ConsumeBool(),  # batchnorm
        same and fdp.ConsumeBool(),  # residual
        fdp.ConsumeBool(),  # relu
        fdp.ConsumeBool(),  # pool
        fdp.PickValueInList(["conv", "linear", "none"]),
        fdp.PickValueInList(["auto", "auto", "torch"]),
        fdp.PickValueInList([torch.float32, torch.float32, torch.float64]),
        fdp.PickValueInList([0.3, 0.7, 0.95]),
    )


@functools.lru_cache(maxsize=128)
def build(cfg: tuple) -> tuple[nn.Module, nn.Module]:
    """The pruned model of ``cfg`` and its sparse-inference form."""
    rep, k, stride, padding, dilation, groups, cin, cout, bias, bn, residual = cfg[:11]
    relu, pool, head, backend, dtype, sparsity = cfg[11:]
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias)
    model = Net(conv, bn, residual, relu, pool, head)
    if bn:
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.weight.data.uniform_(-2, 2)
    if rep == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", sparsity, allocation="uniform")
    model = model.to(dtype).eval()
    return model, ip.sparse_inference(model, mode="sparse", backend=backend)


def make_input(fdp: atheris.FuzzedDataProvider, cin: int, dtype: torch.dtype) -> torch.Tensor:
    """An input tensor; once the data runs out (FDP gives zeros) every choice is the common
    one: a contiguous 2 x cin x 8 x 8 tensor of the model's dtype."""
    rank = fdp.PickValueInList([4, 4, 4, 4, 4, 3, 2, 5, 1, 0])
    shape = [
        fdp.PickValueInList([2, 1, 3, 0]),
        cin if fdp.ConsumeProbability() < 0.8 else fdp.ConsumeIntInRange(0, 6),
        (8 - fdp.ConsumeIntInRange(0, 12)) % 13,
        (8 - fdp.ConsumeIntInRange(0, 12)) % 13,
        fdp.ConsumeIntInRange(1, 2),
    ]
    shape = shape[4 - rank : 4] if rank <= 4 else shape
    if fdp.ConsumeProbability() > 0.75:
        dtype = fdp.PickValueInList(_DTYPES)
    gen = torch.Generator().manual_seed(fdp.ConsumeIntInRange(0, 2**16))
    layout = fdp.ConsumeIntInRange(0, 5)  # 0 contiguous, 1 channels-last, 2 slice, ...
    big = list(shape)
    if layout == 2 and rank:
        big[-1] = 2 * big[-1]
    x = torch.randn(big, generator=gen, dtype=torch.float64)
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        if x.numel():
            x.view(-1)[fdp.ConsumeIntInRange(0, x.numel() - 1)] = fdp.PickValueInList(_SPECIAL)
    if not (dtype.is_floating_point or dtype.is_complex):
        x = torch.nan_to_num(x * 3, posinf=100, neginf=-100)
    x = x.to(dtype)
    if layout == 1 and rank == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == 2 and rank:
        x = x[..., ::2]
    elif layout == 3 and rank == 4:
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == 4 and rank and x.shape[0]:
        x = x[:1].expand(x.shape)
    elif layout == 5 and fdp.ConsumeBool():
        x = x.to_sparse() if fdp.ConsumeBool() else x.to("meta")
    return x


def _run(f, x):
    try:
        with torch.no_grad():
            return f(x), None
    except Exception as e:
        return None, e


def _ours(e: BaseException) -> bool:
    """Whether ``e`` was raised by this package's code (not by torch under it)."""
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and "interspace_pruning" in frames[-1].filename


def _documented(x: torch.Tensor, error: BaseException) -> bool:
    """The refusals of input torch accepts that are by design: unbatched (3-D) input; an empty
    batch, on which torch skips checks (dtype, empty image) that the engine makes; an input
    on the meta device, for which torch computes only the output's shape."""
    if not (isinstance(error, RuntimeError) and _ours(error)):
        return False
    if x.device.type == "meta" or (x.dim() == 4 and x.shape[0] == 0):
        return True
    return x.dim() == 3 and "4D" in str(error)


def _describe(x: torch.Tensor) -> str:
    layout = "sparse" if x.layout != torch.strided else f"strides {x.stride()}"
    return f"input {list(x.shape)} {x.dtype} {x.device} {layout}"


STATS: collections.Counter = collections.Counter()
SHOW_STATS = int(os.environ.get("INTERSPACE_FUZZ_STATS", "0"))  # print outcomes every N inputs


def check(model: nn.Module, engine: nn.Module, x: torch.Tensor) -> None:
    expected, refused = _run(model, x)
    got, error = _run(engine, x)
    where = f"{_describe(x)}, engine plan {engine.plan}"
    kernel = any(getattr(m, "kernel", False) for m in engine.modules())
    outcome = "refused" if error is not None else "computed"
    STATS[f"{outcome} ({'native' if kernel else 'torch'} backend, input {x.dtype})"] += 1
    if error is not None:
        if not isinstance(error, _KINDS):
            raise AssertionError(f"{where}: engine raised {error!r:.300}") from error
        text = str(error).strip()
        if _ours(error) and (not text or "\n" in text):
            raise AssertionError(f"{where}: engine's error is not one line: {text!r:.300}")
        if refused is None and not _documented(x, error):
            raise AssertionError(f"{where}: engine refused input the model accepts: {text:.300}")
        return
    if refused is not None:
        raise AssertionError(f"{where}: engine accepted input the model refuses ({refused!r:.200})")
    if got.shape != expected.shape or got.dtype != expected.dtype:
        raise AssertionError(
            f"{where}: engine gave {list(got.shape)} {got.dtype}, the model "
            f"{list(expected.shape)} {expected.dtype}"
        )
    finite_in = x.layout == torch.strided and bool(torch.isfinite(x).all())
    both = torch.isfinite(got) & torch.isfinite(expected)
    if finite_in and not bool((torch.isfinite(got) == torch.isfinite(expected)).all()):
        raise AssertionError(f"{where}: finite input, non-finite outputs differ")
    if bool(both.any()):
        a, b = got[both].double(), expected[both].double()
        scale = max(1.0, float(b.abs().max()))
        tol = (1e-3 if expected.dtype == torch.float32 else 1e-9) * scale
        if not torch.allclose(a, b, rtol=0, atol=tol):
            raise AssertionError(f"{where}: max difference {float((a - b).abs().max()):.3g}")


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cfg = config(fdp)
    path = fdp.PickValueInList(PATHS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, engine = build(cfg)
        x = make_input(fdp, cfg[6], cfg[15])
        if path is not None:
            os.environ[native.PATH_ENV] = path
        check(model, engine, x)
    total = sum(STATS.values())
    if SHOW_STATS and total % SHOW_STATS == 0:
        print(f"outcomes after {total} inputs:", file=sys.stderr)
        for outcome, n in STATS.most_common(10):
            print(f"  {n:8d}  {outcome}", file=sys.stderr)


def show(data: bytes) -> None:
    """Print the configuration and input an input file stands for, and the outcome."""
    fdp = atheris.FuzzedDataProvider(data)
    cfg = config(fdp)
    path = fdp.PickValueInList(PATHS)
    names = "rep kernel stride padding dilation groups cin cout bias bn residual relu pool"
    names += " head backend dtype sparsity"
    print(dict(zip(names.split(), cfg, strict=True)), "kernel path:", path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, engine = build(cfg)
        x = make_input(fdp, cfg[6], cfg[15])
    print(_describe(x))
    if path is not None:
        os.environ[native.PATH_ENV] = path
    check(model, engine, x)
    print("no finding")


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--show":
        show(Path(argv[2]).read_bytes())
        return
    torch.set_num_threads(int(os.environ.get("INTERSPACE_FUZZ_THREADS", "1")))
    limit_memory()
    seeds = {f"seed-{i}": bytes([i * 37 % 256] * 64) for i in range(8)}
    atheris.Setup(prepare_argv(argv, "kernel_inputs", seeds), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
