"""Where and how training runs: device, precision, memory layout and compilation.

``--device auto`` picks CUDA when available, else the CPU. ``--precision`` selects autocast
(bf16 or fp16, the latter with a gradient scaler); the parameters, masks and filter bases
stay float32 and only the autocast-eligible ops (convolutions, linear layers) run in the
lower precision. ``auto`` resolves per machine: bf16 on GPUs that support it and on CPUs
with native bf16 arithmetic (AVX512-BF16 or AMX); fp32 elsewhere, because on CPUs without
it bf16 is emulated and slower (see the README's CPU throughput table).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..foundations import distributed

if TYPE_CHECKING:
    from ..data import ImageDataset
    from .config import TrainConfig

DEVICES_HELP = "auto (CUDA if available), cpu, cuda or cuda:N"
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
LAYOUTS = ("auto", "on", "off")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str) -> torch.device:
    """The :class:`torch.device` for ``--device spec``. Under ``torchrun`` a bare
    ``cuda`` (or ``auto`` with GPUs) is this process's GPU, ``cuda:LOCAL_RANK``."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "meta":  # tests: shapes only, no data
        return torch.device("meta")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {spec}: CUDA is not available (torch {torch.__version__}, "
                f"{torch.cuda.device_count()} GPUs visible); use --device cpu or auto"
            )
        if spec == "cuda":
            rank = local_rank()
            return torch.device("cuda", rank if rank is not None else 0)
        try:
            index = int(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"--device {spec}: expected cuda:N with an integer N") from None
        if not 0 <= index < torch.cuda.device_count():
            raise ValueError(
                f"--device {spec}: only {torch.cuda.device_count()} GPUs are visible "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    raise ValueError(f"unknown --device {spec!r}; use {DEVICES_HELP}")


@functools.lru_cache(maxsize=1)
def _cpuinfo_text() -> str:
    """``/proc/cpuinfo``, read once per process (``""`` where it does not exist)."""
    with contextlib.suppress(OSError):
        return Path("/proc/cpuinfo").read_text(errors="replace")
    return ""


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The first CPU's model name and feature flags from ``/proc/cpuinfo`` (x86 ``flags``,
    ARM ``Features``); ``("", {})`` where that file does not exist."""
    name, flags = "", frozenset()
    for line in _cpuinfo_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
        if name and flags:
            break
    return name, flags


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    return _cpuinfo()[1]


def cpu_model() -> str:
    """The CPU's model name and its widest vector extension, e.g. ``AMD EPYC (avx2)``: what
    every published timing records beside it."""
    name = _cpuinfo()[0] or platform.processor() or platform.machine() or "unknown CPU"
    isa = next((f for f in ("avx512f", "avx2", "asimd", "neon") if f in cpu_flags()), None)
    return f"{name} ({isa})" if isa else name


def parse_cpu_id(cpuinfo: str) -> str:
    """The CPU generation in ``/proc/cpuinfo`` text: vendor, family, model and stepping of the
    first CPU (x86), e.g. ``AuthenticAMD family 26 model 2 stepping 1``; ``""`` where the
    text has none (ARM). A cloud machine's model name can hide the generation: Zen 4
    (family 25) and Zen 5 (family 26) EPYCs both read "AMD EPYC"."""
    fields = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            if fields:  # a blank line ends the first CPU's block
                break
            continue
        if key in ("vendor_id", "cpu family", "model", "stepping") and key not in fields:
            fields[key] = value.strip()
    if "cpu family" not in fields:
        return ""
    parts = [fields.get("vendor_id", "")] + [
        f"{k.removeprefix('cpu ')} {fields[k]}"
        for k in ("cpu family", "model", "stepping")
        if k in fields
    ]
    return " ".join(p for p in parts if p)


def cpu_id() -> str:
    """This machine's CPU generation (:func:`parse_cpu_id` of ``/proc/cpuinfo``; ``""`` where
    that file does not exist or names none): recorded beside :func:`cpu_model`, which is
    what a machine kind is made of."""
    return parse_cpu_id(_cpuinfo_text())


def hardware(device: torch.device) -> dict:
    """Where a run's timings were measured: device, CPU model and generation, torch threads
    and version."""
    out = {
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def machine_kind(device: torch.device | str = "cpu") -> str:
    """The kind of machine a run trains on, for keeping a pair of runs on one kind: the GPU's
    name on CUDA; on a CPU its model and widest vector extension plus its bf16 support
    (``amx``, ``avx512-bf16``), e.g. ``AMD EPYC (avx512f, avx512-bf16)``. Two CPUs of one
    kind compute bitwise alike for the same thread count (checked across a Zen 4 and a Zen 5
    EPYC, one kind: docs/campaign.md); other kinds only up to rounding. Not the generation
    (:func:`cpu_id`), which each stretch records beside it."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    flags = cpu_flags()
    bf16 = "amx" if "amx_bf16" in flags else "avx512-bf16" if "avx512_bf16" in flags else ""
    model = cpu_model()
    if not bf16:
        return model
    return f"{model[:-1]}, {bf16})" if model.endswith(")") else f"{model} ({bf16})"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so autocast can win."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def precision_is_native(precision: str, device: torch.device | str = "cpu") -> bool:
    """Whether ``precision`` runs at the hardware's speed on ``device``: fp32 always; on a
    CPU bf16 only with AVX512-BF16 or AMX (emulated it measured 10x slower than fp32 on a
    Zen 3) and fp16 never; on CUDA bf16 where the GPU supports it."""
    device = torch.device(device)
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported()
    return precision == "bf16" and device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(spec: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``--precision spec`` on ``device``."""
    if spec not in PRECISIONS:
        raise ValueError(f"unknown --precision {spec!r}; choose one of {PRECISIONS}")
    if spec != "auto":
        if spec == "fp16" and device.type == "cpu" and not hasattr(torch.amp, "GradScaler"):
            raise ValueError("--precision fp16 on the CPU needs torch >= 2.3; use bf16 or fp32")
        return spec
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def resolve_channels_last(spec: str | bool, device: torch.device) -> bool:
    """``--channels-last auto|on|off``: ``auto`` is on for CUDA (tensor-core convolutions
    want NHWC) and for CPUs (oneDNN's convolutions: ResNet-20 training measured 1.12-1.25x
    faster in NHWC on a Zen 3, a Zen 4 and a Sapphire Rapids Xeon, fp32 and bf16; see
    docs/gpus.md); off elsewhere. Models without 4-D weights are unaffected."""
    if isinstance(spec, bool):
        return spec
    if spec not in LAYOUTS:
        raise ValueError(f"unknown --channels-last {spec!r}; choose one of {LAYOUTS}")
    if spec == "auto":
        return device.type in ("cuda", "cpu")
    return spec == "on"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32" or device.type not in ("cpu", "cuda", "xpu", "mps", "hpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def numerics(device: torch.device, precision: str) -> dict:
    """How the numbers of a run were computed, for its ``summary.json``: TF32 for matmul and
    cuDNN, cuDNN autotuning and determinism, deterministic algorithms, the float32 matmul
    precision, the autocast dtype (``None``: fp32 throughout) and the library versions. The
    TF32 and cuDNN flags act on CUDA only; they are recorded wherever the run trained."""
    cudnn = torch.backends.cudnn
    return {
        "device": device.type,
        "precision": precision,
        "autocast_dtype": None if precision == "fp32" else str(_DTYPES[precision]).split(".")[-1],
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(cudnn.allow_tf32),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
    }


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (bf16 has fp32's exponent range)."""
    enabled = precision == "fp16" and device.type in ("cpu", "cuda")
    return torch.amp.GradScaler(device.type if enabled else "cpu", enabled=enabled)


def set_channels_last(model: nn.Module, enabled: bool) -> nn.Module:
    """Put the 4-D parameters and buffers in channels_last (NHWC) layout, and make the
    interspace weights ``(Lambda*M)F`` come out in that layout too."""
    from ..interspace.parametrization import InterspaceWeight

    fmt = torch.channels_last if enabled else torch.contiguous_format
    model.to(memory_format=fmt)
    for m in model.modules():
        if isinstance(m, InterspaceWeight):
            m.memory_format = fmt
    return model


def configure_backends(device: torch.device, precision: str = "fp32") -> None:
    """cuDNN autotuning on CUDA: input shapes are fixed within a run, so the fastest
    convolution algorithm is searched once per shape.

    ``fp32`` means IEEE float32 on GPUs too: torch lets cuDNN convolutions use TF32 (a 10-bit
    mantissa) by default, which is switched off here, so that a run on a GPU differs from the
    same run on a CPU by rounding only (run directories do not hash the device). bf16 and
    fp16 leave torch's settings alone."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if precision == "fp32":
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False


def local_rank() -> int | None:
    """``LOCAL_RANK`` set by ``torchrun``, if any."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None else None


# ---- one training's placement, resolved once -----------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where and how one training runs: device, precision (``fp32``, ``bf16`` or ``fp16``)
    and memory layout, resolved once from a configuration (:meth:`of`)."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def of(cls, cfg: TrainConfig) -> Placement:
        """``cfg.device``, ``cfg.precision`` and ``cfg.channels_last`` on this machine."""
        device = resolve_device(cfg.device)
        return cls(
            device,
            resolve_precision(cfg.precision, device),
            resolve_channels_last(cfg.channels_last, device),
        )


def place(
    model: nn.Module, dataset: ImageDataset, where: Placement, sync_bn: bool = False
) -> ImageDataset:
    """Set up the backends for ``where``, move ``model`` there in its layout (BatchNorm made
    SyncBatchNorm with ``sync_bn`` under ``torchrun``); returns ``dataset`` on the device.
    Before the optimiser is built: its state follows the parameters."""
    configure_backends(where.device, where.precision)
    model.to(where.device)
    if where.channels_last:
        set_channels_last(model, True)
    if sync_bn and distributed.info().enabled:
        distributed.convert_sync_batchnorm(model, where.device)
    return dataset.to(where.device)


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on ``device`` (asynchronously from pinned memory), in the model's layout."""
    if x.device != device:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def compile_model(net: nn.Module) -> nn.Module:
    """``torch.compile`` a model (or its DDP wrapper) with parametrisations.

    Masks are buffers changed in place, which compiled graphs read as inputs: a mask
    update (RigL, GMP, IMP) neither recompiles nor leaves a stale mask. Under DDP, dynamo's
    bucket-splitting optimiser fails on parametrised modules (pytorch#113415), so it is
    switched off: gradients are then all-reduced after the backward instead of overlapped.
    """
    if isinstance(net, nn.parallel.DistributedDataParallel):
        import torch._dynamo as dynamo

        dynamo.config.optimize_ddp = False
    return torch.compile(net)
