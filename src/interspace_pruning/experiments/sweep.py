"""``interspace sweep CONFIG.yaml``: a grid of runs from a YAML file, resumable.

```yaml
out: runs/fmnist-pai            # where the runs go (--out overrides)
base:                           # sections: data, model, prune, train, and schedule options
                                #   (gmp, dst for rigl/set, imp, and each registered schedule's)
  data: {dataset: fashion-mnist, train_subset: 10000}
  train: {epochs: 3, batch_size: 64, lr: 0.05}
grid:                           # every combination; or `grids:` with a list of such maps
  train.seed: [0, 1]
  prune.method: [snip, synflow]
  prune.sparsity: [0.9, 0.95]
  prune.representation: [sp, ip, dense]
```

Each run lives in ``<out>/<hash of its resolved config>/`` with its ``config.json``. A run
with ``summary.json`` is finished and skipped; one with a ``checkpoint.pt`` continues from
it. Kill the sweep at any time and start it again. Several sweep processes may share one
``out`` (runs are claimed before training); ``shard`` splits the runs between them
deterministically (``--shard i/n``: runs i, i+n, i+2n, ... of the file's order, 1-based).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..models import Trust, check_trusted
from ..tracking import TrackingScope
from .config import RunConfig, section_names, set_values
from .grid import GridProblems, canonical, expand, run_grid

TOP_LEVEL = {"name", "description", "out", "base", "grid", "grids"}


@dataclass
class Sweep:
    name: str
    out: Path
    configs: list[RunConfig]


def base_config(base: dict[str, Any] | None) -> RunConfig:
    """A :class:`RunConfig` from ``{section: {field: value}}`` (validated)."""
    cfg = RunConfig()
    sections = section_names()
    for section, values in (base or {}).items():
        if section not in sections:
            raise ValueError(f"unknown section base.{section}; sections are {sections}")
        if not isinstance(values, dict):
            raise ValueError(f"base.{section} must be a mapping of field: value")
        cfg = set_values(cfg, section, values, where=f"base.{section}")
    return cfg


def read_yaml(path: Path, what: str = "sweep file", allowed: set[str] | None = None) -> dict:
    """``yaml.safe_load`` of ``path`` as a mapping whose top-level keys are ``allowed``
    (any, if None); a one-line ``ValueError`` naming ``what`` is wrong otherwise."""
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ValueError(f"cannot read {what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{what} {path} must hold a mapping (see recipes/ for examples)")
    extra = sorted(set(spec) - allowed) if allowed is not None else []
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} in {path}; allowed: {sorted(allowed)}")
    return spec


def load_sweep(path: str | Path, trust_model_imports: Trust = False) -> Sweep:
    """Parse and validate a sweep file (``yaml.safe_load``) before any work starts.

    A model named by an import path is refused unless ``trust_model_imports`` admits it: a
    name read from a file is never imported on the file's word alone."""
    path = Path(path)
    spec = read_yaml(path, "sweep file", TOP_LEVEL)
    grids = spec.get("grids") or ([spec["grid"]] if "grid" in spec else [{}])
    base = base_config(spec.get("base"))
    configs: dict[str, RunConfig] = {}
    for grid in grids:
        if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
            raise ValueError(f"each grid in {path} maps 'section.field' to a list of values")
        for cfg in expand(base, grid):
            check_trusted(cfg.model.model, f"{path}: model.model", trust_model_imports)
            configs.setdefault(repr(canonical(cfg)), cfg)
    name = str(spec.get("name") or path.stem)
    out = Path(spec.get("out") or Path("runs") / name)
    return Sweep(name, out, list(configs.values()))


class ShardError(argparse.ArgumentTypeError, ValueError):
    """A bad ``--shard``; argparse shows an ``ArgumentTypeError``'s message as it is."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard 2 of 8 (1-based)."""
    i, sep, n = str(text).partition("/")
    try:
        shard, count = int(i), int(n)
    except ValueError:
        shard = count = 0
    if not sep or count < 1 or not 1 <= shard <= count:
        raise ShardError(
            f"--shard must look like i/n with 1 <= i <= n (e.g. 1/4 ... 4/4), got {text!r}"
        )
    return shard, count


def shard_configs(configs: list[RunConfig], shard: int, count: int) -> list[RunConfig]:
    """Runs ``shard, shard + count, ...`` (1-based) of the sweep's order: the shards of one
    sweep file are disjoint, cover every run and differ in size by at most one."""
    return list(configs[shard - 1 :: count])


def run_sweep(
    sweep: Sweep,
    out: str | Path | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    wait: bool = True,
    problems: GridProblems | None = None,
) -> list:
    """Run (or resume) every configuration (of one shard); returns ``[(config, summary)]``.

    Runs that diverged have ``{"status": "diverged", ...}`` as their summary; runs with a
    damaged file are skipped and listed in ``problems``.
    """
    configs = sweep.configs if shard is None else shard_configs(sweep.configs, *shard)
    root = Path(out or sweep.out)
    scope = TrackingScope(root, sweep.name)
    return list(
        run_grid(configs, root, progress=progress, wait=wait, problems=problems, tracking=scope)
    )


def with_trackers(sweep: Sweep, names: list[str] | None, every: int | None) -> Sweep:
    """``sweep`` with every run's ``train.log`` (and ``log_every``) replaced, when given:
    ``interspace sweep --log ...`` (neither changes a run's identity or folder)."""
    if names is None and every is None:
        return sweep
    configs = []
    for cfg in sweep.configs:
        train = cfg.train
        if names is not None:
            train = replace(train, log=tuple(names))
        if every is not None:
            train = replace(train, log_every=every)
        configs.append(replace(cfg, train=train))
    return replace(sweep, configs=configs)


def trackers_of(sweep: Sweep) -> list[str]:
    """Every tracker any run of ``sweep`` logs to."""
    return list(dict.fromkeys(n for cfg in sweep.configs for n in cfg.train.log))
