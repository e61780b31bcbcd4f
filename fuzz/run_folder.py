"""Coverage-guided fuzz target (atheris) for the run-folder reader and the report built on it.

Run from the repository root (``pip install -e ".[fuzz]"`` first)::

    python fuzz/run_folder.py -max_total_time=900        # corpus: fuzz/corpus/run_folder/
    python fuzz/run_folder.py -atheris_runs=500 -seed=1 DIR

Each input is a received sweep of two runs (SP and IP of one seed) in which one file was
planted: byte 0 picks the run and the file (``config.json``, ``summary.json``,
``metrics.jsonl``, ``diverged.json``, ``latency.json``), byte 1 how it is made: the rest of
the input as raw bytes, or a real file of that kind with one value replaced by a hostile
one (deep nesting, a huge number, a wrong type, NaN, a long string with Markdown and
newlines). The folder is then read as ``interspace report`` reads it (every run's files,
the IP vs SP table, the per-seed table, the Markdown lines of each run), and one input in
sixteen builds the whole report with its pictures.

Accepted outcomes: the report (the planted run reported or left out and named) or a
``ValueError`` of one line. Anything else is a finding: another exception, a message of
several lines, a line of the report that a planted newline split, a file written outside
the sweep folder, a hang (``-timeout``) or a memory blow-up (the address space is capped).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["interspace_pruning"]):
    from interspace_pruning.experiments import PruneConfig, RunConfig
    from interspace_pruning.foundations.hparams import to_dict
    from interspace_pruning.report import write_report
    from interspace_pruning.report.collect import collect_runs
    from interspace_pruning.report.tables import ip_vs_sp_table, per_seed_table
    from interspace_pruning.report.variants import drop_duplicates, split_variants
    from interspace_pruning.training import TrainConfig

from common import limit_memory, prepare_argv

FILES = ("config.json", "summary.json", "metrics.jsonl", "diverged.json", "latency.json")
HOSTILE = [
    "[" * 3000 + "]" * 3000,
    10**40,
    -1,
    float("nan"),
    "x\n# heading\n![i](http://evil.example/i.png)|" * 50,
    [1] * 1000,
    {"a": {"b": {"c": [None]}}},
    True,
    None,
    "",
]


def _files(rep: str, acc: float) -> dict[str, str]:
    cfg = RunConfig(
        prune=PruneConfig(representation=rep, method="snip", sparsity=0.95),
        train=TrainConfig(epochs=2, seed=0),
    )
    summary = {
        "test_acc": acc,
        "wall_time": 1.0,
        "num_classes": 10,
        "in_channels": 1,
        "hardware": {"cpu": "a CPU", "device": "cpu", "threads": 1},
        "stretches": [{"machine": "a CPU", "precision": "fp32", "from_epoch": 0, "to_epoch": 2}],
        "data_sha256": "0" * 64,
    }
    rows = [{"epoch": e + 1, "test_acc": acc, "train_loss": 1.0 / (e + 1)} for e in range(2)]
    latency = {"results": [{"batch": 1, "cpu": "a CPU", "engines": {"torch": {"median_ms": 1}}}]}
    return {
        "config.json": json.dumps(to_dict(cfg)),
        "summary.json": json.dumps(summary),
        "metrics.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
        "diverged.json": json.dumps({"error": "loss is nan", "test_acc": None}),
        "latency.json": json.dumps(latency),
    }


def _mutate(text: str, fdp: atheris.FuzzedDataProvider) -> str:
    """``text`` (one JSON document per line) with one value replaced by a hostile one."""
    lines = text.splitlines() or ["{}"]
    i = fdp.ConsumeIntInRange(0, len(lines) - 1)
    obj = json.loads(lines[i])
    node, key = obj, None
    for _ in range(fdp.ConsumeIntInRange(1, 3)):  # walk down to a value
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = fdp.PickValueInList(keys)
        if not isinstance(node[key], (dict, list)) or fdp.ConsumeBool():
            break
        node, key = node[key], None
    value = fdp.PickValueInList(HOSTILE)
    if isinstance(node, dict) and (key is None or fdp.ConsumeIntInRange(0, 7) == 0):
        node[fdp.ConsumeUnicodeNoSurrogates(12) or "k"] = value  # an unknown field
    elif key is not None:
        node[key] = value
    lines[i] = json.dumps(obj, allow_nan=True)
    return "\n".join(lines) + "\n"


def _check_one_line(e: ValueError) -> None:
    if "\n" in str(e).strip():
        raise AssertionError(f"a message of several lines: {str(e)[:500]!r}")


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 2 * len(FILES) - 1)
    run, name = ("sp", "ip")[which % 2], FILES[which // 2]
    raw = fdp.ConsumeBool()
    full = fdp.ConsumeIntInRange(0, 15) == 0
    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp) / "outside"
        outside.mkdir()
        root = Path(tmp) / "sweep"
        for rep, acc in (("sp", 0.6), ("ip", 0.7)):
            (root / rep).mkdir(parents=True)
            for file, text in _files(rep, acc).items():
                if file != "diverged.json":
                    (root / rep / file).write_text(text)
        planted = root / run / name
        if raw:
            planted.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
        else:
            planted.write_text(_mutate(_files(run, 0.5)[name], fdp))
        try:
            damaged: list[str] = []
            records, _ = collect_runs(root, damaged)
            records, _ = drop_duplicates(records)
            for _, recs in split_variants(records):
                results = [(r.config, r.summary) for r in recs]
                ip_vs_sp_table(results)
                per_seed_table(results)
            if full:
                text = write_report(root).read_text()
                for line in text.splitlines():
                    if line.startswith("#") and not line.startswith(("# Report", "## ", "### ")):
                        raise AssertionError(f"a planted heading in the report: {line[:200]!r}")
        except ValueError as e:
            _check_one_line(e)
        if any(outside.iterdir()):
            raise AssertionError("a file was written outside the sweep folder")


def main(argv: list[str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    limit_memory()
    seeds = {f"seed-{i}": bytes([i, i % 2]) + b'{"test_acc": 0.5}' for i in range(10)}
    atheris.Setup(prepare_argv(argv, "run_folder", seeds), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
