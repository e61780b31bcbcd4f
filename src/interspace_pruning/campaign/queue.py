"""The queue file: which tables a campaign trains, in which order.

```yaml
name: cpu-campaign
queue:
  - recipe: cifar10_bf16_check.yaml          # a sweep file, relative to this file
  - recipe: cifar10_resnet20_length.yaml
    only: {train.epochs: [4]}                # just these runs of it, now
  - recipe: cifar10_resnet20_converged.yaml  # the rest of it comes later
  - recipe: imagewoof_resnet18.yaml
    keep_models: true                        # commit each pruned run's model.isp
```

Runs are taken in this order (each once: a run listed by two entries goes where it first
appears). Each run belongs to a *group*: the runs of one table whose configurations differ
only in the representation, ``param_matched`` or the precision (the SP and IP runs of a
pair, SP at IP's parameter count, the fp32 and bf16 runs of a precision check). A group
trains on one kind of machine from start to end, so its runs are comparable bitwise-alike.

``keep_models: true`` keeps the trained model of each pruned run of that entry as a compact
sparse file (``model.isp``, committed with the run's small files), so the models can be
benchmarked or inspected on a later machine; ``model.pt`` never leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..experiments.config import REPRESENTATION_FIELDS, RunConfig, section_names
from ..experiments.grid import run_dir
from ..experiments.sweep import load_sweep, read_yaml
from ..foundations.hparams import identity_dict
from ..interspace import Representation

ENTRY_KEYS = {"recipe", "only", "keep_models"}
TOP_KEYS = {"name", "queue"}


@dataclass(frozen=True)
class QueuedRun:
    """One run of a campaign: its configuration and the table folder it belongs to."""

    cfg: RunConfig
    out: Path  # the table's folder (the recipe's ``out``)
    table: str  # the recipe's name
    keep_model: bool = False  # keep the trained sparse model (``model.isp``) in git

    @property
    def dir(self) -> Path:
        return run_dir(self.out, self.cfg)

    @property
    def group(self) -> str:
        """The runs that must train on one kind of machine share this key."""
        return f"{self.out}:{group_key(self.cfg)}"

    def describe(self) -> str:
        p, t = self.cfg.prune, self.cfg.train
        what = "dense" if p.representation.is_dense else f"{p.representation.kind} {p.method}"
        if not p.representation.is_dense:
            what += f" {p.sparsity:g}" + (" param-matched" if p.param_matched else "")
        return f"{self.table}: {what} {t.epochs} ep {t.precision} seed {t.seed}"


def group_key(cfg: RunConfig) -> str:
    """The hash of ``cfg``'s identity without its representation (and IP's basis options),
    ``param_matched`` and precision: the runs of one group are compared with each other."""
    d = identity_dict(cfg)
    for key in REPRESENTATION_FIELDS:
        d["prune"].pop(key, None)
    d["train"].pop("precision", None)
    if cfg.prune.representation.is_dense:  # dense ignores the pruning settings
        d["prune"] = {"dense": True}
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class Queue:
    name: str
    runs: list[QueuedRun]

    def groups(self) -> dict[str, list[QueuedRun]]:
        out: dict[str, list[QueuedRun]] = {}
        for r in self.runs:
            out.setdefault(r.group, []).append(r)
        return out


def _field(cfg: RunConfig, key: str) -> Any:
    section, _, name = key.partition(".")
    if section not in section_names() or not name:
        raise ValueError(f"'only' key {key!r} must look like '<section>.<field>'")
    part = getattr(cfg, section, None)
    if part is None or not hasattr(part, name):
        options = getattr(cfg, "options", {})
        part = options.get(section) if isinstance(options, dict) else None
        if part is None or not hasattr(part, name):
            raise ValueError(f"'only' key {key!r}: no field {name!r} in section {section!r}")
    value = getattr(part, name)
    return value.kind if isinstance(value, Representation) else value


def _matches(cfg: RunConfig, only: dict[str, Any]) -> bool:
    for key, wanted in only.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if _field(cfg, key) not in allowed:
            return False
    return True


def load_queue(path: str | Path) -> Queue:
    """Read and check a queue file (bounded safe YAML, ``load_yaml``); every recipe is loaded
    now, so a bad one is an error before anything trains."""
    path = Path(path)
    spec = read_yaml(path, "queue file", TOP_KEYS)
    if not isinstance(spec.get("queue"), list):
        raise ValueError(f"queue file {path} must map 'queue' to a list of recipes")
    runs: dict[Path, QueuedRun] = {}
    for i, entry in enumerate(spec["queue"], 1):
        if not isinstance(entry, dict) or "recipe" not in entry:
            raise ValueError(f"{path}: queue entry {i} must be a mapping with a 'recipe'")
        bad = sorted(set(entry) - ENTRY_KEYS)
        if bad:
            raise ValueError(f"{path}: queue entry {i}: unknown key {bad[0]!r}")
        only = entry.get("only") or {}
        if not isinstance(only, dict):
            raise ValueError(f"{path}: queue entry {i}: 'only' maps 'section.field' to values")
        keep = entry.get("keep_models", False)
        if not isinstance(keep, bool):
            raise ValueError(f"{path}: queue entry {i}: 'keep_models' must be true or false")
        sweep = load_sweep(path.parent / str(entry["recipe"]))
        for cfg in sweep.configs:
            if _matches(cfg, only):
                r = QueuedRun(cfg, sweep.out, sweep.name, keep)
                runs.setdefault(r.dir, r)
    name = str(spec.get("name") or path.stem)
    return Queue(name, list(runs.values()))
