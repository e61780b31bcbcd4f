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

A sweep file may come from someone else, so reading it is bounded and everything is checked
before anything trains: the YAML itself (:mod:`..foundations.yaml_files`: size, nesting,
aliases), each value (at most :data:`MAX_VALUE_SIZE` items and characters), the number of
runs (at most ``max_cells``, :data:`MAX_CELLS` unless ``--max-cells`` says more) and the
size of a model that ``model_args`` resize (at most :data:`MAX_MODEL_PARAMS` parameters,
counted on PyTorch's meta device, which allocates nothing): a file that asks for more is
refused in one line, naming the key, and no run starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import models
from ..data.shapes import SHAPES
from ..foundations.yaml_files import brief, brief_text, data_size, load_yaml
from ..models import Trust, check_trusted
from ..tracking import TrackingScope
from .config import RunConfig, section_names, set_values
from .grid import GridProblems, canonical, expand, run_grid

TOP_LEVEL = {"name", "description", "out", "base", "grid", "grids"}
#: Runs (grid cells, before duplicates are merged) one sweep file may ask for unless the
#: caller allows more (``--max-cells``): the largest recipe has 180; expanding a cell costs
#: milliseconds, training it minutes or hours.
MAX_CELLS = 1000
#: Items plus characters of one value in a sweep file (a path, a list of milestones, a
#: ``model_args`` mapping): every run repeats its values, so a huge one costs once per run.
MAX_VALUE_SIZE = 4096
#: Parameters of a model that ``model_args`` resize (4 GB of float32 weights, before their
#: gradients and optimiser state): a typo such as ``width: 1000000`` is refused up front.
MAX_MODEL_PARAMS = 10**9
#: Longest error message shown (a value in it is cut in the middle).
_MESSAGE = 300


@dataclass
class Sweep:
    name: str
    out: Path
    configs: list[RunConfig]


def _checked(where: str, value: Any) -> Any:
    """``value`` if it is small enough to repeat in every run; a one-line error if not."""
    if data_size(value, MAX_VALUE_SIZE) > MAX_VALUE_SIZE:
        raise ValueError(
            f"{where} is too large: {brief(value)} holds more than {MAX_VALUE_SIZE} items "
            "and characters"
        )
    return value


def _one_line(e: Exception, where: str = "") -> ValueError:
    """``e``'s message on one line, cut to :data:`_MESSAGE` characters, after ``where``."""
    return ValueError(brief_text(f"{where}{e}", _MESSAGE))


def base_config(base: dict[str, Any] | None) -> RunConfig:
    """A :class:`RunConfig` from ``{section: {field: value}}`` (validated)."""
    if base is not None and not isinstance(base, dict):
        raise ValueError(f"base must be a mapping of section: {{field: value}}, not {brief(base)}")
    cfg = RunConfig()
    sections = section_names()
    for section, values in (base or {}).items():
        if section not in sections:
            raise ValueError(
                f"unknown section base.{brief_text(str(section), 40)}; sections are {sections}"
            )
        if not isinstance(values, dict):
            raise ValueError(f"base.{section} must be a mapping of field: value")
        for field, value in values.items():
            _checked(f"base.{section}.{brief_text(str(field), 40)}", value)
        try:
            cfg = set_values(cfg, section, values, where=f"base.{section}")
        except ValueError as e:
            raise _one_line(e) from None
    return cfg


def read_yaml(path: Path, what: str = "sweep file", allowed: set[str] | None = None) -> dict:
    """The YAML mapping in ``path`` (read with the bounds of
    :func:`~..foundations.yaml_files.load_yaml`) whose top-level keys are ``allowed`` (any,
    if None); a one-line ``ValueError`` naming ``what`` is wrong otherwise."""
    spec = load_yaml(path, what)
    if not isinstance(spec, dict):
        raise ValueError(f"{what} {path} must hold a mapping (see recipes/ for examples)")
    extra = sorted(set(spec) - allowed, key=str) if allowed is not None else []
    if extra:
        raise ValueError(f"unknown key {brief(extra[0], 40)} in {path}; allowed: {sorted(allowed)}")
    return spec


def _grids(spec: dict, path: Path) -> list[dict]:
    """The file's grids, each ``{"section.field": [values]}``, checked (keys, value sizes)."""
    grids = spec.get("grids") or ([spec["grid"]] if "grid" in spec else [{}])
    if not isinstance(grids, list):
        raise ValueError(f"grids in {path} must be a list of grids, not {brief(grids)}")
    for grid in grids:
        if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
            raise ValueError(f"each grid in {path} maps 'section.field' to a list of values")
        for key, values in grid.items():
            if not isinstance(key, str):
                raise ValueError(f"grid key {brief(key, 40)} in {path} must be 'section.field'")
            for value in values:
                _checked(f"{path}: grid {key}", value)
    return grids


def count_cells(grids: Iterable[dict]) -> int:
    """Runs the grids ask for, duplicates included: the product of each grid's list
    lengths, summed over the grids (computed, not expanded)."""
    return sum(math.prod(len(values) for values in grid.values()) for grid in grids)


def _expand(base: RunConfig, grid: dict, path: Path) -> list[RunConfig]:
    """:func:`~.grid.expand`, its errors (which name the grid key) naming the file too."""
    try:
        return expand(base, grid)
    except ValueError as e:
        raise _one_line(e, f"{path}: ") from None


def model_size(cfg: RunConfig) -> tuple[int | None, str]:
    """Parameters of ``cfg``'s model, built on the meta device (nothing allocated, its
    weights not even initialised on real memory), for the dataset's classes and channels
    (an image folder: 1000 classes); None when it cannot be counted that way. The text
    says why the model cannot be built, when it cannot."""
    shape = SHAPES.get(cfg.data.dataset)
    classes = shape.num_classes if shape is not None and shape.num_classes else 1000
    channels = shape.channels if shape is not None else 3
    try:
        return cfg.model.count_parameters(classes, channels), ""
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        return None, f"{type(e).__name__}: {e}"
    except RuntimeError as e:
        if "meta" in str(e).lower():  # a builder that needs real tensors: not counted here
            return None, ""
        return None, f"{type(e).__name__}: {e}"  # e.g. a negative or overflowing size
    except Exception:  # a builder of the caller's own that fails on meta: the run will tell
        return None, ""


def check_model_sizes(
    configs: Iterable[RunConfig], path: str | Path, max_params: int = MAX_MODEL_PARAMS
) -> None:
    """Refuse (one line naming ``model.model_args``) a model that ``model_args`` make too
    large (over ``max_params`` parameters) or impossible to build, before any run starts.
    Only models with ``model_args`` are built (the library's models at their defaults are
    known sizes); import paths are not (nothing is imported while a file is read)."""
    seen = set()
    for cfg in configs:
        m = cfg.model
        if not m.model_args or (m.model not in models.names() and models.is_import_path(m.model)):
            continue
        key = (m.model, m.model_args, cfg.data.dataset)
        if key in seen:
            continue
        seen.add(key)
        count, problem = model_size(cfg)
        args = brief(" ".join(m.model_args), 60)
        if problem:
            raise _one_line(
                ValueError(problem), f"{path}: model {m.model} with model_args {args} fails: "
            )
        if count is not None and count > max_params:
            raise ValueError(
                f"{path}: model {m.model} with model_args {args} has {count:.3g} parameters, "
                f"more than {max_params:.3g}; is a value in model.model_args too large? "
                "(nothing was trained)"
            )


def load_sweep(
    path: str | Path,
    trust_model_imports: Trust = False,
    max_cells: int = MAX_CELLS,
    max_params: int | None = MAX_MODEL_PARAMS,
    out: str | Path | None = None,
) -> Sweep:
    """Parse and validate a sweep file before any work starts (see the module docstring
    for its bounds: ``max_cells`` runs, models of ``max_params`` parameters, None: any).
    ``out`` (the caller's choice, e.g. ``--out``) replaces the file's ``out``.

    A model named by an import path is refused unless ``trust_model_imports`` admits it: a
    name read from a file is never imported on the file's word alone."""
    path = Path(path)
    spec = read_yaml(path, "sweep file", TOP_LEVEL)
    name = spec.get("name")
    if not isinstance(name, str | int | float | type(None)) or len(str(name)) > 200:
        raise ValueError(f"name in {path} must be a short text, not {brief(name)}")
    if name is not None and (str(name) in ("", ".", "..") or set(str(name)) & set("/\\\0")):
        # the name is a folder under runs/: `../../x` would put the runs elsewhere
        raise ValueError(f"name in {path} must be one folder name, not {brief(name)}")
    chosen, out = out, spec.get("out")
    if not isinstance(out, str | type(None)) or len(out or "") > 4096:
        raise ValueError(f"out in {path} must be a folder path, not {brief(out)}")
    grids = _grids(spec, path)
    cells = count_cells(grids)
    if cells > max_cells:
        raise ValueError(
            f"sweep file {path} asks for {cells} runs, more than {max_cells}; "
            "pass --max-cells to allow more (nothing was expanded or trained)"
        )
    try:
        base = base_config(spec.get("base"))
    except ValueError as e:
        raise _one_line(e, f"{path}: ") from None
    configs: dict[str, RunConfig] = {}
    for grid in grids:
        for cfg in _expand(base, grid, path):
            check_trusted(cfg.model.model, f"{path}: model.model", trust_model_imports)
            configs.setdefault(repr(canonical(cfg)), cfg)
    if max_params is not None:
        check_model_sizes(configs.values(), path, max_params)
    name = str(name or path.stem)
    out = Path(chosen or out or Path("runs") / name)
    return Sweep(name, out, list(configs.values()))


class ShardError(argparse.ArgumentTypeError, ValueError):
    """A bad ``--shard``; argparse shows an ``ArgumentTypeError``'s message as it is."""


class FlagError(argparse.ArgumentTypeError, ValueError):
    """A bad value of a flag; argparse shows it after the flag's name, in one line."""


def parse_max_cells(text: str) -> int:
    """``--max-cells N``: a count >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FlagError(f"must be a count >= 1, got {brief(text, 40)}")
    return value


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
