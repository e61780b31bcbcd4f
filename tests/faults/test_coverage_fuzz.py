"""Coverage-guided fuzzing (atheris) for a fixed number of iterations, and its findings.

``test_fuzz_target_finds_nothing`` runs each target of ``fuzz/`` (the sparse-file reader, the
sparse engine's input checks, the run-folder reader and report) in a subprocess from a fresh
corpus with a fixed ``-seed``: libFuzzer must finish its runs without a finding (an uncaught
exception, a crash, a hang or a memory blow-up; see each target's docstring).
``INTERSPACE_COVFUZZ_RUNS=N`` runs N inputs per target instead of the defaults (sized for about
20 s each on 2 shared cores). Skipped where atheris is not installed (``pip install -e
".[fuzz]"``; Linux only).

The other tests are the files the fuzzer found (or that were found while writing it), as
regression tests; they need no atheris. Each is loaded in a subprocess whose address space
is capped, so a regression fails fast instead of allocating gigabytes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.foundations.checkpoint import save_tensors
from interspace_pruning.inference.sparse_format import sparse_payload

ROOT = Path(__file__).resolve().parents[2]
RUNS = {"sparse_file": 500, "kernel_inputs": 1500, "run_folder": 150}
if os.environ.get("INTERSPACE_COVFUZZ_RUNS"):
    RUNS = dict.fromkeys(RUNS, int(os.environ["INTERSPACE_COVFUZZ_RUNS"]))
SPEC = {"name": "convnet", "num_classes": 10, "in_channels": 1}


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def fuzz(target: str, runs: int, out: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(ROOT / "fuzz" / f"{target}.py"),
        f"-atheris_runs={runs}",
        "-seed=1",
        "-timeout=60",
        f"-artifact_prefix={out}{os.sep}",
        str(out / "corpus"),
    ]
    return subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install -e '.[fuzz]'; Linux only)",
)
@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target_finds_nothing(target, tmp_path):
    proc = fuzz(target, RUNS[target], tmp_path)
    findings = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    output = (proc.stdout + proc.stderr).splitlines()  # atheris prints the exception to stdout
    report = "\n".join([line for line in output if not line.startswith(("#", "INFO:"))][-40:])
    assert proc.returncode == 0 and not findings, f"findings {findings}:\n{report}"
    assert f"Done {RUNS[target]} " in proc.stderr, report


# ---- the findings ---------------------------------------------------------------------------

LOAD = """
import resource, sys, warnings
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
from interspace_pruning.inference.sparse_format import load_sparse
for path in sys.argv[1:]:
    try:
        load_sparse(path)
        print("loaded")
    except Exception as e:
        print(type(e).__name__, str(e).replace(chr(10), " | "))
"""


def _stride0(meta, tensors):
    """A view with stride 0: 4 stored bytes, 2**31 - 1 elements (took 100 s and 14 GB)."""
    key = f"layer/{meta['layers'][0]['name']}/values"
    tensors[key] = tensors[key][:1].expand(2**31 - 1)


def _wide_layer(meta, tensors):
    """A header layer 2**24 channels wide, none of it stored (built a 2.4 GB model)."""
    meta["layers"][0]["shape"][1] = 2**24
    meta["model"]["in_channels"] = 2**24


def _aliased(meta, tensors):
    """The same, with 100 tensors sharing one 1 MB storage to inflate what the file "stores"."""
    shared = torch.zeros(2**18)
    for i in range(100):
        tensors[f"state/alias{i}.weight"] = shared
    _wide_layer(meta, tensors)


def _huge_model(meta, tensors):
    """A model size taken from an empty tensor's shape (a 68 GB allocation, RuntimeError)."""
    tensors["state/extra.weight"] = torch.zeros(0, 2**28)
    meta["model"]["num_classes"] = 2**28


def _overflow(meta, tensors):
    """Finite in the file as float64, infinite as the model's float32 (NaN outputs)."""
    key = next(k for k in tensors if k.startswith("state/") and k.endswith(".bias"))
    tensors[key] = tensors[key].double()
    tensors[key][0] = 1e300


FINDINGS = {
    # refused where every tensor file is read (load_tensors), before the sparse checks
    _stride0: "bytes of tensors from",
    _wide_layer: "header field 'layers' describes",
    _aliased: "bytes of tensors from",  # 100 names of one tensor: counted 100 times
    _huge_model: "header field 'model' names a model of",
    _overflow: "overflows the model's torch.float32",
}


def test_fuzz_findings_are_refused_with_one_line(tmp_path):
    torch.manual_seed(0)
    model = ip.models.get("convnet", 10, 1)
    ip.to_interspace(model)
    ip.prune(model, "random", 0.8)
    paths = []
    for change in FINDINGS:
        payload = sparse_payload(model.eval(), SPEC)
        meta = json.loads(payload["meta"])
        change(meta, payload["tensors"])
        payload["meta"] = json.dumps(meta)
        paths.append(tmp_path / f"{change.__name__}.isp")
        save_tensors(paths[-1], payload)
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, *map(str, paths)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(FINDINGS), proc.stdout + proc.stderr[-2000:]
    for line, (change, expected) in zip(lines, FINDINGS.items(), strict=True):
        assert line.startswith(("ValueError ", "CorruptFileError ")), (change.__name__, line)
        assert expected in line, (change.__name__, line)
        assert " | " not in line  # one line
