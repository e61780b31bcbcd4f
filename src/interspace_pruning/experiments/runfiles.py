"""A run directory's files, each checked on reading: a bad one is named, never a traceback.

``model.pt`` carries its identity: ``{"format": "interspace-model", "version": 2,
"config_hash": ..., "state_dict": ...}``, so a model copied into another run's folder is
refused. Files of version 1 (a bare state dict, written before that) still load.
``model.isp``, where a run has one, is the same trained model as a compact sparse file
(:func:`..inference.export_sparse`, tagged with the run's config hash): small enough to
commit, so a finished run can be loaded on a machine that never had its ``model.pt``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..foundations.checkpoint import load_tensors, save_tensors
from ..foundations.hparams import config_hash
from ..foundations.io import CorruptFileError, atomic_write_json, read_json, read_jsonl
from ..foundations.schema import (
    COUNT,
    FRACTION,
    MAPPING,
    RESULT,
    SHORT_TEXT,
    TEXT,
    Field,
    check_fields,
    check_items,
    problem,
)
from .config import RunConfig, config_from_dict

CONFIG, SUMMARY, METRICS, MODEL = "config.json", "summary.json", "metrics.jsonl", "model.pt"
SPARSE_MODEL = "model.isp"
#: A number in ``config.json``: finite and bounded (an epoch count of 10**400 would be
#: printed, looped over or allocated by the code that trusts the file).
NUMBER = Field(("float",), low=-1e15, high=1e15)
MODEL_FORMAT, MODEL_VERSION = "interspace-model", 2
#: Written instead of a summary when a run's loss became NaN/inf (it would again: skipped).
DIVERGED = "diverged.json"


#: The folders of an IMP run's rounds: ``round_0/``, ``round_1/``, ...
ROUND_PREFIX = "round_"


def round_dir(out: Path, r: int) -> Path:
    """Where round ``r`` of an IMP run in ``out`` keeps its files."""
    return Path(out) / f"{ROUND_PREFIX}{r}"


#: What a summary's fields may hold (see :mod:`..foundations.schema`): what the report, the
#: bench and ``--resume`` read from it, bounded so a received folder cannot make them
#: allocate a model of 10^12 classes or print a list where a name belongs.
SUMMARY_SCHEMA: dict[str, Field] = {
    **dict.fromkeys(
        ("test_acc", "best_test_acc", "train_acc", "train_eval_acc", "sparsity"), FRACTION
    ),
    **dict.fromkeys(("dense_filter_fraction",), FRACTION),
    **dict.fromkeys(
        (
            "test_loss",
            "train_loss",
            "train_eval_loss",
            "gap_acc",
            "gap_loss",
            "grad_norm",
            "grad_norm_init",
            "spatial_grad_norm",
            "spatial_grad_norm_init",
            "basis_grad_norm",
            "basis_grad_norm_init",
            "basis_overhead",
        ),
        RESULT,
    ),
    **dict.fromkeys(("nonzero", "prunable"), Field(("int", "null"), low=0)),
    **dict.fromkeys(
        (
            "parameters",
            "basis_params",
            "dense_flops",
            "sparse_flops",
            "sparse_bytes",
            "dense_bytes",
        ),
        COUNT,
    ),
    "wall_time": Field(("float",), low=0.0),
    "epochs": Field(("int",), low=0, high=1_000_000),
    # the model is rebuilt with these: bounded before anything is allocated
    "num_classes": Field(("int",), low=1, high=100_000),
    "in_channels": Field(("int",), low=1, high=4096),
    "representation": SHORT_TEXT,
    "config_hash": Field(("str",), longest=64),
    "status": SHORT_TEXT,
    "error": TEXT,
    "data_sha256": Field(("str", "null"), longest=128),
    "init_from_sha256": Field(("str", "null"), longest=128),
    "hardware": MAPPING,
    "numerics": MAPPING,
    "code": Field(("dict", "null")),
    "stretches": Field(("list",), longest=100_000),
    "filter_nnz_hist": Field(("list",), longest=10_000),
}
#: The machine a run trained on (``summary["hardware"]``, each of ``stretches``).
HARDWARE_SCHEMA: dict[str, Field] = {
    **dict.fromkeys(
        ("cpu", "cpu_id", "gpu", "device", "torch", "machine", "precision"),
        Field(("str", "null"), longest=200),
    ),
    "threads": Field(("int", "null"), low=0),
    "from_epoch": Field(("int",), low=0),
    "to_epoch": Field(("int",), low=0),
    "channels_last": Field(("bool", "null")),
    **dict.fromkeys(("started", "ended", "how"), Field(("str", "null"), longest=200)),
    # the data this stretch trained on (its fingerprint), and whether the caller passed it
    # (``run(dataset=...)``) instead of the configuration naming it
    "data_sha256": Field(("str", "null"), longest=128),
    "data_given": Field(("bool", "null")),
}
#: A row of ``metrics.jsonl``: numbers (null or NaN where a run diverged), the epoch first.
METRICS_ROW_SCHEMA: dict[str, Field] = {
    "epoch": Field(("int",), low=0, high=1_000_000),
    "step": Field(("int",), low=0),
    **dict.fromkeys(("test_acc", "train_acc", "sparsity"), FRACTION),
    **dict.fromkeys(
        ("test_loss", "train_loss", "lr", "elapsed", "epoch_time", "grad_norm"), RESULT
    ),
}


def check_summary(summary: dict, path: str | Path, fix: str = "") -> dict:
    """``summary`` if its fields keep :data:`SUMMARY_SCHEMA` (and its machine records,
    :data:`HARDWARE_SCHEMA`); else a :class:`CorruptFileError` naming the file and field."""
    check_fields(summary, SUMMARY_SCHEMA, path, fix)
    if isinstance(summary.get("hardware"), dict):
        check_fields(summary["hardware"], HARDWARE_SCHEMA, path, fix, where="hardware: ")
    for i, stretch in enumerate(
        check_items(summary.get("stretches", []), MAPPING, path, "stretches", fix)
    ):
        check_fields(stretch, HARDWARE_SCHEMA, path, fix, where=f"stretches[{i}]: ")
    check_items(summary.get("filter_nnz_hist", []), COUNT, path, "filter_nnz_hist", fix)
    return summary


def _retrain(run_dir: Path) -> str:
    return f"delete the folder {run_dir} to train that run again"


def read_config(path: str | Path) -> RunConfig:
    """The :class:`RunConfig` in a run's ``config.json``, every field type-checked.

    Files of every version read back to the configuration (and hash) they were written
    for: the flat keys (``representation``, ``basis``, ``gmp_interval``, ``dst_stop``, ...)
    are the current layout too, and fields added since take their defaults."""
    path = Path(path)
    fix = _retrain(path.parent)
    d = read_json(path, dict, fix)
    for name, section in d.items():
        if not isinstance(section, dict):
            raise CorruptFileError(path, f"has a {name!r} that is not a mapping", fix)
        for key, value in section.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if (why := problem(value, NUMBER)) is not None:
                raise CorruptFileError(path, f"field {name}.{key} {why}", fix)
    try:
        return config_from_dict(d, check=True)
    except (ValueError, TypeError, OverflowError) as e:
        raise CorruptFileError(path, f"is not a valid run configuration ({e})", fix) from None


def read_summary(path: str | Path, cfg: RunConfig | None = None) -> dict:
    """A finished run's ``summary.json`` (a JSON object); with ``cfg``, that of this run
    (:func:`check_identity`)."""
    path = Path(path)
    fix = _retrain(path.parent)
    summary = check_summary(read_json(path, dict, fix), path, fix)
    if "test_acc" not in summary:  # every finished run records it (NaN if it diverged)
        raise CorruptFileError(path, "lacks the field 'test_acc'", fix)
    return check_identity(summary, cfg, path, fix)


def read_diverged(path: str | Path, cfg: RunConfig | None = None) -> dict:
    """A diverged run's ``diverged.json``, as a summary with ``status: diverged``; with
    ``cfg``, that of this run (:func:`check_identity`)."""
    path = Path(path)
    fix = f"delete {path} to train that run again"
    summary = check_summary(read_json(path, dict, fix), path, fix)
    return {"status": "diverged", **check_identity(summary, cfg, path, fix)}


def check_identity(summary: dict, cfg: RunConfig | None, path: Path, fix: str) -> dict:
    """``summary`` if it is the result of run ``cfg`` (None: not checked): its
    ``config_hash``, which :func:`finish` records, is ``cfg``'s. Summaries written before
    that carry none: their ``representation`` must at least be ``cfg``'s. A summary copied
    into another run's folder must not be reported as that run's result."""
    if cfg is None:
        return summary
    want = config_hash(cfg)
    theirs = summary.get("config_hash")
    if theirs is not None and theirs != want:
        raise CorruptFileError(
            path, f"is the result of another run (config_hash {theirs!r}, this run's {want!r})", fix
        )
    rep = summary.get("representation")
    if rep is not None and rep != cfg.prune.representation.kind:
        raise CorruptFileError(
            path,
            f"records a {rep!r} run, but config.json says {cfg.prune.representation.kind!r}: "
            "the result of another run",
            fix,
        )
    return summary


def relabel_results(run_dir: Path, tag: str, old: str) -> None:
    """Name run ``tag`` in the result files of ``run_dir`` that name ``old``: a run adopted
    under its configuration's new hash (a setting added to the hash) stays readable. A file
    naming a third run was copied in from elsewhere: a one-line :class:`CorruptFileError`,
    and nothing is changed (relabelled, it would pass for this run's result)."""
    found = {}
    for name in (SUMMARY, DIVERGED):
        path = Path(run_dir) / name
        if path.is_file():
            data = read_json(path, dict)
            theirs = data.get("config_hash", tag)
            if theirs not in (tag, old):
                raise CorruptFileError(
                    path,
                    f"is the result of another run (config_hash {theirs!r}, not {old!r})",
                    f"delete it to train this run ({tag}) again",
                )
            if theirs != tag:
                found[path] = data
    for path, data in found.items():
        atomic_write_json(path, {**data, "config_hash": tag})


#: The most rows a ``metrics.jsonl`` is read with when its run's length is not known.
MAX_METRICS_ROWS = 100_000


def read_metrics(path: str | Path, cfg: RunConfig | None = None) -> list[dict]:
    """A run's per-epoch ``metrics.jsonl``: one row an epoch, so with ``cfg`` (the run's
    configuration) at most ``epochs + 1`` rows, else :data:`MAX_METRICS_ROWS`."""
    path = Path(path)
    fix = _retrain(path.parent)
    if cfg is None:
        rows = read_jsonl(path, fix, MAX_METRICS_ROWS)
    else:
        most = cfg.train.epochs + 1
        rows = read_jsonl(
            path, fix, most, f" (a run of {cfg.train.epochs} epochs writes one an epoch)"
        )
    for n, row in enumerate(rows, 1):
        check_fields(row, METRICS_ROW_SCHEMA, path, fix, where=f"row {n}: ")
    return rows


def diverged(summary: dict, key: str = "test_acc") -> bool:
    """Whether a summary records a run that diverged (a NaN/inf result or a ``diverged`` mark)."""
    if summary.get("status") == "diverged":
        return True
    value = summary.get(key)
    return not isinstance(value, (int, float)) or not math.isfinite(value)


def model_file(run_dir: str | Path) -> Path | None:
    """The file a finished run's model is loaded from: its ``model.pt``, else the
    ``model.isp`` a campaign kept; None if it has neither."""
    for name in (MODEL, SPARSE_MODEL):
        if (path := Path(run_dir) / name).is_file():
            return path
    return None


def write_model(path: str | Path, model: nn.Module, tag: str) -> int:
    """Write ``model``'s state dict as a ``model.pt`` of the run whose config hash is ``tag``."""
    return save_tensors(
        path,
        {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "config_hash": tag,
            "state_dict": model.state_dict(),
        },
    )


def _bare_state_dict(obj: dict) -> bool:
    """Version 1: a bare state dict, written before model files had an identity."""
    return "format" not in obj and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_model_state(model: nn.Module, state: dict, path: Path) -> None:
    """``model.load_state_dict(state)``, ``state`` read from ``path``: a state that does not
    fit the model (another architecture or size) is a one-line :class:`CorruptFileError`
    naming the file, not torch's message of every mismatched key."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CorruptFileError(
            path, f"does not fit the model of this run's config.json ({first})"
        ) from None


def read_model(path: str | Path, tag: str | None = None, fix: str = "") -> dict:
    """The state dict in a ``model.pt``; with ``tag``, refused unless that run wrote it.

    Loadable by plain torch too: ``torch.load(path, weights_only=True)["state_dict"]``.
    """
    path = Path(path)
    fix = fix or _retrain(path.parent)
    obj = load_tensors(path, "model file", fix, legacy=_bare_state_dict)
    if _bare_state_dict(obj):
        return obj  # version 1: no identity to check
    if obj.get("format") != MODEL_FORMAT or obj.get("version") != MODEL_VERSION:
        raise CorruptFileError(
            path, f"is not an {MODEL_FORMAT} v{MODEL_VERSION} file (nor a bare state dict)", fix
        )
    theirs, state = obj.get("config_hash"), obj.get("state_dict")
    if not isinstance(theirs, str) or not isinstance(state, dict):
        raise CorruptFileError(path, "lacks its config_hash or state_dict", fix)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CorruptFileError(path, "has a state_dict that does not map names to tensors", fix)
    if tag is not None and theirs != tag:
        raise CorruptFileError(
            path,
            f"was written by run {theirs}, not by the run of this folder ({tag}): it was "
            "copied or moved here from another run",
            fix,
        )
    return state
