"""Keeping a report's cells honest: the runs compared with each other in one table row (the
seeds of SP and IP) differ in nothing but the seed and the representation.

Rows are keyed by method and sparsity (:func:`.tables.row_key`). Runs of one row that differ
in anything else (a learning rate, a schedule option, the model's arguments) are different
experiments: :func:`split_variants` gives each setting its own table, titled by the fields
that differ, and :func:`drop_duplicates` keeps one run where two folders hold the same run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..experiments.config import REPRESENTATION_FIELDS, comparable_fields
from ..foundations.hparams import identity_dict
from .collect import RunRecord
from .machines import run_precision
from .tables import row_key, side

#: Fields that do not change what a run computes (where the data lies, loader processes).
NOT_PROTOCOL = ("train.seed", "data.root", "data.download", "data.workers")


#: IP's own options: compared between IP runs, absent (any value matches) for SP and dense.
BASIS_FIELDS = tuple(
    f for f in REPRESENTATION_FIELDS if f not in ("representation", "param_matched")
)


#: Datasets that are whatever folder ``data.root`` names: runs on two folders are two
#: datasets (told apart by the data they read, ``data_sha256``, else by the folder).
FOLDER_DATASETS = ("imagefolder",)


def _fields(record: RunRecord, also: tuple[str, ...]) -> dict[str, Any]:
    out = comparable_fields(record.config, without=NOT_PROTOCOL + also)
    if record.config.data.dataset in FOLDER_DATASETS:
        digest = record.summary.get("data_sha256")
        out["data"] = digest[:12] if isinstance(digest, str) else record.config.data.root
    if out.get("model.init_from"):  # each seed fine-tunes its own trained model: the row
        out["model.init_from"] = "a trained model"  # says so, .build.mismatched_starts checks
    if side(record.config) == "ip":
        prune = identity_dict(record.config)["prune"]
        out.update({f"prune.{k}": prune.get(k) for k in BASIS_FIELDS})
    return out


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differing_fields(records: Sequence[RunRecord], also: tuple[str, ...] = ()) -> list[str]:
    """The fields (``section.field``) in which runs of one row differ, besides the seed and
    the representation (``also``: more fields to ignore, e.g. ``train.epochs``): within a
    side, and between SP and IP (an SP sweep and an IP sweep at other learning rates, merged
    into one folder, are not pairs). IP's basis options are compared between IP runs."""
    values: dict[tuple, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        for key, value in _fields(r, also).items():
            values[row_key(r.config)][key].add(_text(value))
    return sorted({k for per in values.values() for k, seen in per.items() if len(seen) > 1})


def split_variants(
    records: Sequence[RunRecord], also: tuple[str, ...] = ()
) -> list[tuple[str, list[RunRecord]]]:
    """``records`` in groups whose rows hold runs differing only in seed and representation,
    each with a label naming its values of the fields that differed (``""`` for a single
    group). A run that lacks such a field (dense has no pruning options) joins the groups
    it matches in all the others, so one dense baseline serves every variant."""
    fields = differing_fields(records, also)
    if not fields:
        return [("", list(records))]
    keyed: dict[tuple, list[RunRecord]] = defaultdict(list)
    partial: list[tuple[dict[str, str], RunRecord]] = []
    for r in records:
        mine = _fields(r, also)
        values = {k: _text(mine[k]) for k in fields if k in mine}
        if len(values) == len(fields):
            keyed[tuple(values[k] for k in fields)].append(r)
        else:
            partial.append((values, r))
    for values, r in partial:  # e.g. the dense row when a pruning option differs
        matches = [
            key for key in keyed if all(key[fields.index(k)] == v for k, v in values.items())
        ]
        for key in matches or [tuple(values.get(k, "-") for k in fields)]:
            keyed[key].append(r)
    return [
        (", ".join(f"{k} = {v}" for k, v in zip(fields, key, strict=True)), recs)
        for key, recs in sorted(keyed.items())
    ]


def drop_duplicates(records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """One run per row, side and seed of the same setting (the first by folder name), and a
    line for each run left out because another folder holds the same run."""
    kept: dict[tuple, RunRecord] = {}
    dropped = []
    for r in sorted(records, key=lambda r: str(r.path)):
        key = (
            row_key(r.config),
            side(r.config),
            r.config.train.seed,
            _text(_fields(r, ())),
            run_precision(r.config, r.summary),  # the same settings, trained in another
        )
        if key in kept:
            dropped.append(f"{r.path.name} repeats the run in {kept[key].path.name}")
        else:
            kept[key] = r
    return [r for r in records if r in kept.values()], dropped
