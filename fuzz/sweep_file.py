"""Coverage-guided fuzz target (atheris) for the sweep-file reader, ``load_sweep``.

Run from the repository root (``pip install -e ".[fuzz]"`` first)::

    python fuzz/sweep_file.py -max_total_time=900        # corpus: fuzz/corpus/sweep_file/
    python fuzz/sweep_file.py -atheris_runs=300 -seed=1 DIR
    python fuzz/sweep_file.py --show crash-...           # the sweep file an input stands for

An input stands for a sweep file. Byte 0 picks how: the rest of the input as the file's
text (libFuzzer's mutations find the YAML parser's corners), or a real sweep file (a base
and a grid) in which one to three values were replaced by hostile ones (a huge or negative
number, a long string, deep nesting, a long list, an import path, ``model_args`` that make
a model of 10**13 parameters, a wrong type, an unknown key), written out with
``yaml.safe_dump``, and perhaps given anchors and aliases: a "billion laughs" of 1 to 9
levels whose top alias is a grid value, a base value or an unused description, or a grid of
up to 10**9 cells (bounded here at ``MAX_CELLS``, 64).

Accepted outcomes: a loaded sweep (then each run's folder name is computed, as
``--dry-run`` does) or a ``ValueError`` of one line and at most 600 characters (no value is
shown whole). Anything else is a finding: another exception, a message of several lines or
of a huge value, a module imported (an import path read from a file must be refused), an
input that takes longer than ``INTERSPACE_FUZZ_SLOW_S`` (10) seconds, a hang (``-timeout``)
or a memory blow-up (the address space is capped at ``INTERSPACE_FUZZ_AS_MB``).
``INTERSPACE_FUZZ_STATS=N`` prints the commonest outcomes every N inputs.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import atheris
import yaml

with atheris.instrument_imports(include=["interspace_pruning"]):
    from interspace_pruning import models
    from interspace_pruning.experiments.grid import run_dir
    from interspace_pruning.experiments.sweep import load_sweep
    from interspace_pruning.foundations import yaml_files  # noqa: F401 (instrumented)

from common import limit_memory, prepare_argv

SLOW_S = float(os.environ.get("INTERSPACE_FUZZ_SLOW_S", "10"))
SHOW_STATS = int(os.environ.get("INTERSPACE_FUZZ_STATS", "0"))
MAX_MESSAGE = 600
#: Grids are bounded at this many cells here (the default, 1000, is the same check; this
#: keeps each input fast: expanding a cell validates its whole configuration).
MAX_CELLS = 64
STATS: collections.Counter = collections.Counter()

SEED = {
    "name": "fuzz",
    "base": {
        "data": {"dataset": "digits", "train_subset": 100},
        "model": {"model": "convnet", "model_args": {"width": 4}},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.05},
    },
    "grid": {
        "train.seed": [0, 1],
        "prune.method": ["snip", "magnitude"],
        "prune.sparsity": [0.5, 0.9],
        "prune.representation": ["sp", "ip"],
    },
}
KEYS = [
    "train.seed",
    "train.lr",
    "train.epochs",
    "train.step_milestones",
    "train.log",
    "prune.sparsity",
    "prune.method",
    "prune.basis",
    "model.model",
    "model.model_args",
    "data.dataset",
    "data.root",
    "data.image_size",
    "gmp.gmp_interval",
    "dst.dst_interval",
    "train",
    "nosuch.field",
]


def _deep(n: int) -> list:
    value: list = []
    for _ in range(n):
        value = [value]
    return value


HOSTILE = [
    10**40,
    -1,
    0,
    1e308,
    float("nan"),
    "",
    "x" * 5000,
    "os:system",
    "mypkg.nets:build",
    "resnet20",
    "0.9",
    _deep(40),
    list(range(2000)),
    {"width": 10**6},
    {"width": -1},
    {"width": "abc"},
    {"widht": 3},
    [1, 2],
    None,
    True,
    {},
    [],
    {"a": {"b": {"c": [None]}}},
]


def _plant(spec: dict, fdp: atheris.FuzzedDataProvider) -> None:
    """Replace a value somewhere in ``spec`` (or add an unknown key) with a hostile one."""
    node: dict | list = spec
    key = None
    for _ in range(fdp.ConsumeIntInRange(1, 3)):  # walk down to a value
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = fdp.PickValueInList(keys)
        if not isinstance(node[key], dict | list) or fdp.ConsumeBool():
            break
        node, key = node[key], None
    value = fdp.PickValueInList(HOSTILE)
    if isinstance(node, dict) and (key is None or fdp.ConsumeIntInRange(0, 5) == 0):
        node[fdp.PickValueInList(KEYS)] = [value] if fdp.ConsumeBool() else value
    elif key is not None:
        node[key] = value


def _laughs(levels: int, where: str) -> str:
    """Anchors ``l0`` .. ``l{levels}``, each nine aliases of the one before, and a use of the
    top one (in a grid value, a base value or a description nobody reads)."""
    lines = ["description:", "  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    top = f"*l{levels}"
    use = {
        "grid": f"grid:\n  train.lr: [{top}]\n  model.model_args: [{{width: {top}}}]",
        "base": f"base:\n  data: {{root: {top}}}",
        "description": "grid:\n  train.seed: [0]",
    }[where]
    return "\n".join(lines) + "\n" + use + "\n"


def _cells(keys: int, values: int) -> str:
    """A grid of ``values ** keys`` cells (integer fields, so that small ones expand)."""
    names = ["train.seed", "train.epochs", "train.batch_size", "data.train_subset"]
    names += ["data.test_subset", "prune.prune_batches", "train.log_every", "data.workers"]
    names += ["imp.rewind_step"]
    return yaml.safe_dump({"grid": {n: list(range(1, values + 1)) for n in names[:keys]}})


def text_of(data: bytes) -> str:
    """The sweep file an input stands for (see the module docstring)."""
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 7)
    if mode <= 2:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    if mode == 3:
        levels = fdp.ConsumeIntInRange(1, 9)
        return _laughs(levels, fdp.PickValueInList(["grid", "base", "description"]))
    if mode == 4:
        return _cells(fdp.ConsumeIntInRange(1, 9), fdp.ConsumeIntInRange(1, 10))
    spec = yaml.safe_load(yaml.safe_dump(SEED))  # a fresh copy
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        _plant(spec, fdp)
    text = yaml.safe_dump(spec, sort_keys=False, width=10**6)
    if mode == 7 and fdp.remaining_bytes():  # some raw text after it: a second key, junk
        text += fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    return text


def _no_import(*args, **kwargs):
    raise AssertionError(f"a model was imported from a sweep file: {args!r:.200}")


class Target:
    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="ipfuzz-sweep-")) / "sweep.yaml"

    def __call__(self, data: bytes) -> None:
        self.path.write_text(text_of(data), encoding="utf-8", errors="surrogatepass")
        start = time.monotonic()
        try:
            sweep = load_sweep(self.path, max_cells=MAX_CELLS)
            for cfg in sweep.configs:  # what --dry-run shows
                run_dir(sweep.out, cfg)
            STATS[f"loaded ({min(len(sweep.configs), 10)} runs or more)"] += 1
        except ValueError as e:
            text = str(e)
            STATS[text.replace(str(self.path), "FILE")[:50]] += 1
            if not text.strip() or "\n" in text.strip():
                raise AssertionError(
                    f"a ValueError without a one-line message: {text!r:.500}"
                ) from None
            if len(text) > MAX_MESSAGE:
                raise AssertionError(
                    f"a message of {len(text)} characters: {text[:300]!r}"
                ) from None
        took = time.monotonic() - start
        if took > SLOW_S:
            raise AssertionError(f"reading the sweep file took {took:.1f} s")
        if SHOW_STATS and sum(STATS.values()) % SHOW_STATS == 0:
            print(f"outcomes after {sum(STATS.values())} inputs:", file=sys.stderr)
            for outcome, n in STATS.most_common(15):
                print(f"  {n:8d}  {outcome}", file=sys.stderr)


def main(argv: list[str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    models.build_from_path = _no_import  # a file must never make load_sweep import
    if len(argv) == 3 and argv[1] == "--show":
        print(text_of(Path(argv[2]).read_bytes()))
        return
    limit_memory()
    seeds = {f"seed-{i}": bytes([i]) + b"\x01\x02\x03\x04" * 4 for i in range(8)}
    seeds["seed-recipe"] = b"\x00" + yaml.safe_dump(SEED).encode()
    atheris.Setup(prepare_argv(argv, "sweep_file", seeds), Target())
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
