"""How many CPU threads torch trains with: ``threads="auto"``, the default of
``interspace train``/``compare``/``sweep`` (``--threads``) and of Python's
:func:`~interspace_pruning.experiments.compare`, so the same job trains alike from both.

The rule, first match wins:

1. ``--threads N`` / ``threads=N`` (always), or ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
   in the environment (torch reads them; ``torchrun`` sets ``OMP_NUM_THREADS=1``): left as
   given (``threads=None`` from Python: torch's setting as it is).
2. Training on a GPU: torch's default.
3. A tiny model on the CPU, one whose forward pass over a training batch costs under
   :data:`TINY_GFLOPS` (the convnet on the 8x8 digits: 0.19 GFLOP at batch 64): one thread.
   Such steps are too short to share among threads: a second thread gains little on an idle
   machine, and on a busy one every step waits for the thread that lost its core (measured
   on a loaded 2-core machine: 37.1 s with 2 threads, 4.6 s with 1). One thread also makes
   the result the same whatever the core count (threads change the order of float sums).
4. Otherwise torch's default (one thread per core) less the cores that other processes
   keep busy (the 1-minute load average, rounded), at least 1.

Only registered models are measured for rule 3 (built on the meta device: no memory, no
weights); a ``package.module:callable`` model is never called just to count its FLOPs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import models
from ..data import SHAPES, image_shape
from ..training.device import resolve_device
from .config import RunConfig

#: A forward pass over one training batch below this many GFLOPs is a tiny model.
TINY_GFLOPS = 1.0
#: Environment variables through which the user already chose the thread count.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def batch_gflops(cfg: RunConfig) -> float | None:
    """Forward GFLOPs of one training batch of ``cfg``'s model on its data (without loading
    the data); ``None`` for an import-path model, or one that cannot be measured."""
    name = cfg.model.model
    if models.is_import_path(name) and name not in models.names():
        return None
    shape = SHAPES.get(cfg.data.dataset)
    num_classes = (shape.num_classes if shape else None) or 10
    sample = image_shape(cfg.data.dataset, cfg.data.image_size)
    try:
        with torch.device("meta"):
            model = models.from_spec(name, num_classes, sample[0], cfg.model.model_args)
            x = torch.zeros((cfg.train.batch_size, *sample))
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model.eval()(x)
    except Exception:  # measured nothing: no opinion
        return None
    return counter.get_total_flops() / 1e9


def _load() -> float:
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return 0.0


def auto_threads(
    configs: Sequence[RunConfig],
    default: int | None = None,
    load: float | None = None,
    environ: dict[str, str] | None = None,
    cores: int | None = None,
) -> ThreadChoice | None:
    """The thread count of rules 2-4 for runs of ``configs`` (a sweep: the largest decides),
    or ``None`` where torch's setting stays (rule 1, or a GPU). ``default`` (torch's
    default), ``load`` (the load average) and ``environ`` are read from this machine
    unless given, and ``cores`` (the cores this process may use)."""
    environ = os.environ if environ is None else environ
    if any(environ.get(v) for v in THREAD_VARIABLES):
        return None
    if not configs or any(resolve_device(c.train.device).type != "cpu" for c in configs):
        return None
    default = torch.get_num_threads() if default is None else default
    sizes = [batch_gflops(c) for c in configs]
    if all(s is not None and s < TINY_GFLOPS for s in sizes):
        gflops = max(s for s in sizes if s is not None)
        return ThreadChoice(1, f"tiny model on the CPU: {gflops:.2f} GFLOP per batch")
    busy = round(_load() if load is None else load)
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(default, (cores or default) - busy))
    if threads == default:
        return ThreadChoice(threads, "one per core")
    return ThreadChoice(threads, f"one per core less {busy} busy (load average)")


#: What ``threads`` may be: a count >= 1, ``"auto"`` (the rule above) or ``None`` (torch's).
Threads = int | str | None


def check_threads(threads: object) -> Threads:
    """``threads`` if it is a count >= 1, ``"auto"`` or ``None``; else one ``ValueError``."""
    if threads is None or threads == "auto":
        return threads
    if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
        return threads
    raise ValueError(
        f"threads must be a count >= 1, 'auto' (the rule of the CLI's --threads auto) or "
        f"None (torch's setting), got {threads!r}"
    )


@contextlib.contextmanager
def training_threads(threads: Threads, configs: Sequence[RunConfig]) -> Iterator[int]:
    """Inside the block torch uses the thread count of the rule for runs of ``configs``
    (``threads``: a count, ``"auto"``, or ``None`` to leave torch's setting); afterwards
    torch's previous count is back. Yields the count in use."""
    threads = check_threads(threads)
    saved = torch.get_num_threads()
    choice = auto_threads(configs) if threads == "auto" else None
    wanted = threads if isinstance(threads, int) else (choice.threads if choice else None)
    try:
        if wanted is not None:
            torch.set_num_threads(wanted)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)
