"""Timing a pruned model on this CPU: torch dense, the sparse engine and ONNX Runtime.

Three engines run the same weights: ``torch`` (the folded dense model, BatchNorm fused, as
``sparse_inference(mode="dense")``), ``sparse`` (``sparse_inference(mode="auto")``, each layer
on whichever path measured faster on the benchmark input) and ``onnxruntime`` (the folded
dense model exported with :func:`export_onnx`, run by ONNX Runtime on the CPU). They take
turns, one forward pass each per round, so that drifts in machine load hit all alike; each
time is the median over the rounds, all engines on the same number of threads.

Peak memory, when asked for, is measured in a fresh process per engine: the resident set
size (RSS) of the whole process, its high-water mark reset once the engine is built and
read after the timed passes (``/proc/self/clear_refs``; where that is unavailable,
``ru_maxrss``, which also counts loading the model). Loading what ``interspace bench`` is
given (a run directory, a sparse file) and starting those processes is the command line's
part: :mod:`interspace_pruning.cli.sources`.

Inputs are bounded before anything is allocated (:func:`check_input`): one forward pass on
PyTorch's meta device (shapes only, no memory, no arithmetic) says whether the model takes
an input of that size at all (pooling needs a minimum) and how large its largest activation
is, from which the memory of a batch is estimated (:func:`batch_bytes`) and compared with
what the machine has available: a batch that cannot fit is a one-line ``ValueError``, not an
allocation failure minutes into the run.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import io
import logging
import math
import os
import resource
import statistics
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..foundations.memory import available_memory, gib
from ..foundations.modes import eval_mode
from ..masks import has_masks
from ..training.device import cpu_model
from . import native
from .engine import sparse_inference
from .fusion import fuse_batchnorm
from .onnx_export import export_onnx
from .timing import interleaved_times

ENGINES = ("torch", "sparse", "onnxruntime")
ORT_MISSING = (
    'ONNX Runtime is not installed: pip install -e ".[onnx]" in the repository (or pip install '
    "onnxruntime onnx onnxscript)"
)


#: Bounds on the bench's inputs (the command line's flags; memory bounds them further).
MAX_BATCH = 2**16
MAX_INPUT_SIZE = 2**13
MAX_REPEATS = 10**5
MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))
#: What a batch needs besides its input, in copies of its largest activation (per image):
#: the sparse engine's unfolded input of a 3x3 convolution alone is 9 of them.
ACTIVATION_COPIES = 12


def _meta_copy(model: nn.Module) -> nn.Module:
    """``model`` in eval mode on the meta device, without copying a single weight."""
    memo: dict[int, torch.Tensor] = {}
    for t in [*model.parameters(), *model.buffers()]:
        empty = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(empty, t.requires_grad) if isinstance(t, nn.Parameter) else empty
    return copy.deepcopy(model, memo).eval()


def probe_input(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, str]:
    """One forward pass of one input of ``input_shape`` on the meta device: the number of
    elements of the largest activation (0 if the pass failed) and why it failed ("" if not;
    e.g. too small an image for the model's pooling)."""
    try:
        meta = _meta_copy(model)
    except Exception:  # a model that cannot be copied: no estimate, the bench will tell
        return 0, ""
    largest = [0]

    def measure(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel())

    for name, module in meta.named_modules():
        if "parametrizations" not in name.split("."):  # a weight's computation: not per image
            module.register_forward_hook(measure)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta(torch.empty((1, *input_shape), device="meta", dtype=dtype))
    except Exception as e:
        text = " ".join(str(e).split()) or type(e).__name__
        if "meta" in text.lower():  # an operation the meta device lacks: no estimate then
            return 0, ""
        return 0, text[:160] + (" ..." if len(text) > 160 else "")
    return largest[0], ""


def batch_bytes(model: nn.Module, input_shape: tuple[int, ...], batch: int, largest: int) -> int:
    """Estimated memory (bytes) of benching ``batch`` inputs: the inputs, the largest
    activation of each (``largest`` elements, from :func:`probe_input`) times
    :data:`ACTIVATION_COPIES`, and the engines' copies of the weights."""
    size = next((p.element_size() for p in model.parameters()), 4)
    per_input = size * (math.prod(input_shape) + ACTIVATION_COPIES * largest)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return batch * per_input + 4 * weights


def check_input(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> None:
    """A one-line ``ValueError`` if ``model`` cannot take a batch of ``batch`` inputs of
    ``input_shape`` (see :func:`probe_input`) or it would not fit in the memory available."""
    largest, problem = probe_input(model, input_shape)
    shape = "x".join(map(str, input_shape))
    if problem:
        raise ValueError(f"the model cannot take an input of {shape}: {problem}")
    need, free = batch_bytes(model, input_shape, batch, largest), available_memory()
    if free is not None and need > free:
        raise ValueError(
            f"a batch of {batch} inputs of {shape} needs about {gib(need)}, more than the "
            f"{gib(free)} this machine has available"
        )


@dataclass
class EngineResult:
    """One engine's times (ms, one per round), their median, and what else was learnt."""

    name: str
    median_ms: float | None = None  # by the result's clock
    times_ms: list[float] = field(default_factory=list)
    wall_median_ms: float | None = None
    max_abs_diff: float | None = None  # of its outputs against the torch engine's
    peak_rss_mib: float | None = None
    runtime_rss_mib: float | None = None  # RSS after imports, before the model is loaded
    note: str = ""


@dataclass
class BenchResult:
    """All engines at one batch size."""

    batch: int
    input_shape: tuple[int, ...]
    threads: int
    repeats: int
    clock: str
    cpu: str
    kernel: str
    torch_version: str
    engines: dict[str, EngineResult]

    def speedup(self, name: str) -> float | None:
        """Torch dense time over engine ``name``'s time."""
        base, e = self.engines.get("torch"), self.engines.get(name)
        if base is None or e is None or not base.median_ms or not e.median_ms:
            return None
        return base.median_ms / e.median_ms

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        for name, e in d["engines"].items():
            e["speedup_vs_torch"] = self.speedup(name)
        return d

    def markdown(self) -> str:
        lines = [
            f"batch {self.batch}, input {'x'.join(map(str, self.input_shape))}, "
            f"{self.threads} threads, median {self.clock} time of {self.repeats} interleaved "
            "rounds; "
            f"{self.cpu}; kernel: {self.kernel}; torch {self.torch_version}",
            "",
            "| engine | median ms | speed-up vs torch dense | peak RSS MiB | max abs diff | note |",
            "|---|---|---|---|---|---|",
        ]
        for name, e in self.engines.items():
            sp = self.speedup(name)
            lines.append(
                f"| {name} | {_fmt(e.median_ms, '{:.2f}')} | {_fmt(sp, '{:.2f}x')} | "
                f"{_fmt(e.peak_rss_mib, '{:.0f}')} | {_fmt(e.max_abs_diff, '{:.1e}')} | "
                f"{e.note} |"
            )
        return "\n".join(lines)


def _fmt(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def kernel_path(engine: nn.Module | None = None) -> str:
    """Which convolution kernel the sparse engine runs, as far as this build says."""
    for obj in (engine, native):
        attr = getattr(obj, "kernel_path", None)
        if attr is not None:
            return str(attr() if callable(attr) else attr)
    return "native build (spconv.c)" if native.available() else "torch (no native kernel)"


def dense_engine(model: nn.Module) -> nn.Module:
    """The folded dense model with BatchNorm fused, as deployed without the sparse engine."""
    if has_masks(model):
        return sparse_inference(model, mode="dense")
    out = copy.deepcopy(model).eval()
    fuse_batchnorm(out)
    return out


def ort_session(model: nn.Module, input_shape: tuple[int, ...], threads: int):
    """An ONNX Runtime CPU session of the folded dense model, and its run function."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError(ORT_MISSING) from None
    with tempfile.TemporaryDirectory() as tmp, _quiet_export():
        path = export_onnx(model, Path(tmp) / "model.onnx", input_shape)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])

    return run


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Hides the exporter's progress lines and warnings (the bench prints a table)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def build_engines(
    model: nn.Module,
    example: torch.Tensor,
    engines: tuple[str, ...] = ENGINES,
    threads: int = 1,
) -> tuple[dict[str, Callable[[torch.Tensor], torch.Tensor]], dict[str, str]]:
    """The callable of each engine that can run ``model``, and a note per engine.

    An engine that cannot run it (the sparse engine on a model without masks, ONNX Runtime
    when it is not installed) gets no callable and a note saying why. The engines are built
    from ``model`` in eval mode; its train/eval modes are restored afterwards.
    """
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown engine {unknown[0]!r}; choose from {', '.join(ENGINES)}")
    fns: dict[str, Callable] = {}
    notes: dict[str, str] = {}
    with eval_mode(model), _threads(threads), torch.no_grad():
        for name in engines:
            if name == "torch":
                fns[name] = dense_engine(model)
                notes[name] = "folded, BatchNorm fused"
            elif name == "sparse":
                if not has_masks(model):
                    notes[name] = "skipped: the model is dense (no masks)"
                    continue
                eng = sparse_inference(model, example=example, mode="auto")
                kept = sum(v == "sparse" for v in eng.plan.values())
                fns[name] = eng
                notes[name] = f"auto: {kept}/{len(eng.plan)} pruned layers sparse"
            else:
                try:
                    fns[name] = ort_session(model, tuple(example.shape[1:]), threads)
                except ValueError as e:
                    if str(e) != ORT_MISSING or len(engines) == 1:
                        raise
                    notes[name] = "skipped: onnxruntime not installed"
                    continue
                notes[name] = "folded dense model, CPU provider"
    return fns, notes


def bench(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 1,
    threads: int = 1,
    repeats: int = 30,
    engines: tuple[str, ...] = ENGINES,
    progress: bool = False,
    seed: int = 0,
    clock: str = "wall",
) -> BenchResult:
    """Time ``model`` (pruned or dense) on this CPU with each engine on a random batch.

    Args:
        input_shape: one input's shape, e.g. ``(1, 28, 28)``.
        threads: CPU threads for every engine (torch, the sparse kernel, ONNX Runtime).
        repeats: timed passes per engine (in alternating blocks, see ``timing``).
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (CPU time of the calling thread, for
            a machine shared with other work: time spent preempted is not counted; needs
            ``threads=1``, where torch, the kernel and ONNX Runtime compute in that thread).
    """
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    if clock == "cpu" and threads != 1:
        raise ValueError("the cpu clock counts the calling thread only: use it with threads=1")
    if batch < 1 or threads < 1 or repeats < 1:
        raise ValueError(
            f"batch, threads and repeats must be >= 1, got {batch}, {threads}, {repeats}"
        )
    check_input(model, tuple(input_shape), batch)  # before anything of that size is made
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    x = torch.randn((batch, *input_shape), generator=gen).to(dtype)
    fns, notes = build_engines(model, x, engines, threads)
    with _threads(threads):
        wall, cpu = interleaved_times(fns, x, repeats, progress, f"batch {batch}")
        times = cpu if clock == "cpu" else wall
        with torch.no_grad():
            outs = {k: fn(x) for k, fn in fns.items()}
    results = {}
    for name in engines:
        t = [s * 1e3 for s in times.get(name, [])]
        diff = None
        if name in outs and "torch" in outs:
            diff = float((outs[name] - outs["torch"]).abs().max())
        w = wall.get(name)
        results[name] = EngineResult(
            name,
            statistics.median(t) if t else None,
            t,
            statistics.median(w) * 1e3 if w else None,
            diff,
            note=notes.get(name, ""),
        )
    sparse = fns.get("sparse")
    return BenchResult(
        batch=batch,
        input_shape=tuple(input_shape),
        threads=threads,
        repeats=repeats,
        clock=clock,
        cpu=cpu_model(),
        kernel=kernel_path(sparse if isinstance(sparse, nn.Module) else None),
        torch_version=torch.__version__,
        engines=results,
    )


# ---- peak memory of one engine (``cli.sources`` runs it in a fresh process per engine) ------


def _status_mib(key: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_peak(
    load: Callable[[], tuple[nn.Module, tuple[int, ...]]], engine: str, batch: int, threads: int
) -> dict:
    """Peak RSS of serving one engine, measured in this process (meant to be a fresh one:
    see ``cli.sources.peak_memory``): ``load()`` gives the model and one input's shape; the
    engine is built, the model dropped, the RSS peak reset, and five batches run."""
    torch.set_num_threads(threads)
    if engine == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError(ORT_MISSING) from None
    runtime = _status_mib("VmRSS")
    model, shape = load()
    x = torch.randn(batch, *shape)
    fns, notes = build_engines(model, x, (engine,), threads)
    if engine not in fns:
        return {"note": notes[engine]}
    fn = fns[engine]
    del model
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed build memory back first
    reset = _reset_peak()
    with torch.no_grad():
        for _ in range(5):
            fn(x)
    peak = _status_mib("VmHWM") if reset else None
    if peak is None:  # whole-process peak, including loading
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_rss_mib": peak, "runtime_rss_mib": runtime, "reset": reset}
