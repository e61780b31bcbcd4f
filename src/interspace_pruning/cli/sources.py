"""What ``interspace bench`` is given: a run directory or a sparse file, loaded as a model and
the shape of one input; and the peak memory of serving it, one fresh process per engine.

This is the application side of :mod:`..inference.bench`: loading a run needs the run
files, configurations and model rebuilding of ``experiments`` and ``report``, which sit
above ``inference``; the timing and the in-process memory measurement stay there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from torch import nn

from ..data import image_shape
from ..experiments.runfiles import MODEL, SPARSE_MODEL, model_file, read_config
from ..foundations.hparams import config_hash
from ..inference.bench import BenchResult, measure_peak
from ..inference.sparse_format import UnnamedModelError, load_sparse
from ..models import Trust
from ..report.collect import collect_runs, load_model

#: The ``src`` folder this package is imported from (the fresh process imports it too).
_SRC = Path(__file__).resolve().parents[2]


def run_folder(path: Path) -> Path | None:
    """The run directory ``path`` names (itself, or the folder of its ``model.pt``,
    ``config.json`` or ``summary.json``); None for a sparse file."""
    if path.is_file() and path.name in ("model.pt", "config.json", "summary.json"):
        return path.parent
    return path if path.is_dir() else None


def run_identity(path: Path) -> dict:
    """``{"config_hash": ...}`` of the run ``path`` names (its ``config.json``), so that
    timings written into a run folder say whose they are; ``{}`` for a sparse file."""
    folder = run_folder(path)
    if folder is None:
        return {}
    return {"config_hash": config_hash(read_config(folder / "config.json"))}


def load_source(
    path: str | Path, input_size: int | None = None, trust_model_imports: Trust = False
) -> tuple[nn.Module, tuple[int, ...]]:
    """The model in a run directory (``config.json`` + ``model.pt``, or ``model.isp`` where
    ``model.pt`` is absent) or in a sparse file
    written by :func:`export_sparse`, and the shape of one input. A model named by an import
    path is rebuilt only if ``trust_model_imports`` admits it (see ``models.check_trusted``)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist; give a run directory or a sparse file (.isp)")
    path = run_folder(path) or path
    if path.is_dir():
        if not (path / "config.json").is_file():
            runs = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
            hint = f"; it holds runs, e.g. {runs[0]}: bench one of them" if runs else ""
            raise ValueError(f"{path} is not a run directory (no config.json){hint}")
        if model_file(path) is None:
            raise ValueError(
                f"{path} has no {MODEL} (nor {SPARSE_MODEL}): the run has not finished, or "
                "its model stayed on the machine that trained it"
            )
        damaged: list[str] = []
        records, _ = collect_runs(path, damaged, trust_model_imports=trust_model_imports)
        if damaged:
            raise ValueError(f"{path}/{damaged[0]}; that run cannot be loaded")
        if not records:
            raise ValueError(f"{path} has no summary.json: the run has not finished")
        rec = records[0]
        model = load_model(rec)
        data = rec.config.data  # image folders: the configured crop
        shape = image_shape(data.dataset, data.image_size, rec.summary.get("in_channels"))
    else:
        try:
            model = load_sparse(path, trust_model_imports=trust_model_imports)
        except UnnamedModelError:
            raise ValueError(
                f"{path} does not name its model, so this command cannot rebuild it: export it "
                "again with a spec, ip.export_sparse(model, path, {'name': 'package.module:"
                "callable' or a registered name, 'num_classes': N, 'in_channels': C}), or "
                "bench its run folder"
            ) from None
        except ValueError:
            raise
        except Exception as e:  # not a torch file at all, or not ours
            raise ValueError(
                f"{path} is not a run directory or an interspace sparse file ({type(e).__name__})"
            ) from None
        channels = model_in_channels(model)
        shape = (channels, 28, 28) if channels == 1 else (channels, 32, 32)
    if input_size is not None:
        if input_size < 1:
            raise ValueError(f"--input-size must be >= 1, got {input_size}")
        shape = (shape[0], input_size, input_size)
    return model.eval(), shape


def model_in_channels(model: nn.Module) -> int:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError("the model has no convolution; interspace bench times CNNs")
    return first.in_channels


# ---- peak memory, one fresh process per engine ---------------------------------------------


def peak_memory(
    source: str | Path,
    engine: str,
    batch: int,
    threads: int = 1,
    input_size: int | None = None,
    timeout: float = 600,
    trust_model_imports: Trust = False,
) -> dict:
    """Peak RSS (MiB) of a fresh process that serves ``source`` with one engine."""
    env = dict(os.environ)
    src = str(_SRC)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    args = [str(source), engine, str(batch), str(threads), str(input_size or 0)]
    args.append(_trust_text(trust_model_imports))
    cmd = [sys.executable, "-m", "interspace_pruning.cli.sources", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"memory measurement of {engine} failed: {last}")
    return json.loads(lines[-1])


def _trust_text(trust: Trust) -> str:
    """``trust_model_imports`` as one argument of the child: "*" all, else names by commas."""
    if isinstance(trust, bool):
        return "*" if trust else ""
    return ",".join(sorted(trust))


def _trust_of(text: str) -> Trust:
    return True if text == "*" else {name for name in text.split(",") if name}


def _child(
    source: str,
    engine: str,
    batch: int,
    threads: int,
    input_size: int | None,
    trust_model_imports: Trust = False,
) -> dict:
    """Runs in the fresh process: load the source, then measure one engine there."""
    return measure_peak(
        lambda: load_source(source, input_size, trust_model_imports), engine, batch, threads
    )


def add_memory(
    result: BenchResult,
    source: str | Path,
    input_size: int | None = None,
    trust_model_imports: Trust = False,
) -> BenchResult:
    """Fill in each timed engine's peak RSS (one subprocess per engine)."""
    for name, e in result.engines.items():
        if e.median_ms is None:
            continue
        m = peak_memory(
            source,
            name,
            result.batch,
            result.threads,
            input_size,
            trust_model_imports=trust_model_imports,
        )
        e.peak_rss_mib = m.get("peak_rss_mib")
        e.runtime_rss_mib = m.get("runtime_rss_mib")
    return result


if __name__ == "__main__":  # the child of peak_memory
    src_arg, eng, b, t, size, trusted = sys.argv[1:7]
    try:
        out = _child(src_arg, eng, int(b), int(t), int(size) or None, _trust_of(trusted))
    except ValueError as err:
        print(str(err), file=sys.stderr)
        sys.exit(2)
    print(json.dumps(out))
