"""Where and in which precision a finished run trained, as its ``summary.json`` records it,
so that a report never pairs runs of different precisions and marks pairs that trained on
different kinds of machine.

New summaries list ``stretches`` (one entry per stretch of training: ``machine``, the kind of
machine, e.g. ``AMD EPYC (avx512f, avx512-bf16)`` or ``NVIDIA H200``, and ``precision``);
older ones have ``hardware`` (the GPU's name on CUDA, else the CPU's) and ``numerics``
(``precision``), or neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..experiments.config import RunConfig
from ..experiments.stretches import UNRECORDED, machine_kinds, summary_stretches

#: The mark of a pair whose two runs trained on different kinds of machine.
MIXED = "⚠"

__all__ = [
    "MIXED",
    "UNRECORDED",
    "machine_kinds",
    "machine_label",
    "mixed_kinds",
    "one_precision",
    "run_precision",
    "unrecorded",
]


def machine_label(summary: Mapping) -> str:
    """The run's machine kinds as one name (``A + B`` for a run continued on another kind)."""
    return " + ".join(machine_kinds(summary)) or UNRECORDED


def run_precision(cfg: RunConfig, summary: Mapping) -> str:
    """The precision a run trained in: its stretches' (``bf16+fp32`` if they differ), else
    ``numerics.precision``, else the config's ``train.precision`` (fp32 by default)."""
    found = [str(s["precision"]) for s in summary_stretches(summary) if s.get("precision")]
    if found:
        return "+".join(sorted(set(found)))
    numerics = summary.get("numerics")
    if isinstance(numerics, Mapping) and numerics.get("precision"):
        return str(numerics["precision"])
    return cfg.train.precision


def one_precision(results: Sequence[tuple[RunConfig, Mapping]]) -> str | None:
    """The one precision of ``results`` (None if empty); a one-line ``ValueError`` if they
    trained in several, because runs of different precisions must not share a table."""
    found = sorted({run_precision(cfg, s) for cfg, s in results})
    if len(found) > 1:
        raise ValueError(
            f"runs of several precisions ({', '.join(found)}) in one table: "
            "pass one precision's runs at a time (interspace report gives each its own section)"
        )
    return found[0] if found else None


def mixed_kinds(*summaries: Mapping) -> tuple[str, ...] | None:
    """The machine kinds of runs compared with each other (a pair: SP and IP of one seed)
    when they are more than one kind, else None; None also when a run's machine is
    unrecorded (nothing to compare)."""
    kinds = [machine_kinds(s) for s in summaries]
    if not all(kinds):
        return None
    union = tuple(dict.fromkeys(k for ks in kinds for k in ks))
    return union if len(union) > 1 else None


def unrecorded(*summaries: Mapping) -> bool:
    """Whether any of the runs has no record of its machine."""
    return not all(machine_kinds(s) for s in summaries)
