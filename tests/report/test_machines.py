"""Where a run trained, as the report reads it from summaries new and old: machine kinds,
precision, and the pairs that mix kinds of machine."""

import pytest

from interspace_pruning.experiments import RunConfig
from interspace_pruning.report.machines import (
    UNRECORDED,
    machine_kinds,
    machine_label,
    mixed_kinds,
    one_precision,
    run_precision,
    unrecorded,
)
from interspace_pruning.training import TrainConfig

XEON = "Intel Xeon (avx512f, amx)"
EPYC = "AMD EPYC (avx2)"


def _stretch(machine, precision="bf16", start=0, end=30):
    return {"machine": machine, "precision": precision, "from_epoch": start, "to_epoch": end}


def test_machine_kinds_come_from_stretches_else_hardware():
    assert machine_kinds({"stretches": [_stretch(XEON), _stretch(XEON, start=30)]}) == (XEON,)
    moved = {"stretches": [_stretch(XEON), _stretch(EPYC, start=30)]}
    assert machine_kinds(moved) == (XEON, EPYC) and machine_label(moved) == f"{XEON} + {EPYC}"
    # older summaries: the GPU's name on CUDA, else the CPU's
    assert machine_kinds({"hardware": {"cpu": "Xeon", "gpu": "NVIDIA H200"}}) == ("NVIDIA H200",)
    assert machine_kinds({"hardware": {"cpu": EPYC, "device": "cpu"}}) == (EPYC,)
    assert machine_kinds({}) == () and machine_label({}) == "unrecorded hardware"
    # stretches win over the hardware entry (which names the last machine only)
    both = {"stretches": [_stretch(XEON)], "hardware": {"cpu": EPYC}}
    assert machine_kinds(both) == (XEON,)


def test_precision_comes_from_stretches_then_numerics_then_config():
    fp32, bf16 = RunConfig(), RunConfig(train=TrainConfig(precision="bf16"))
    assert run_precision(fp32, {}) == "fp32" and run_precision(bf16, {}) == "bf16"
    assert run_precision(fp32, {"numerics": {"precision": "bf16"}}) == "bf16"
    mixed = {"stretches": [_stretch(XEON, "bf16"), _stretch(XEON, "fp32", 30)]}
    assert run_precision(fp32, mixed) == "bf16+fp32"
    auto = RunConfig(train=TrainConfig(precision="auto"))
    assert run_precision(auto, {"stretches": [_stretch(XEON, "bf16")]}) == "bf16"


def test_one_table_one_precision():
    fp32, bf16 = RunConfig(), RunConfig(train=TrainConfig(precision="bf16"))
    assert one_precision([(fp32, {}), (fp32, {"numerics": {"precision": "fp32"}})]) == "fp32"
    assert one_precision([]) is None
    with pytest.raises(ValueError, match=r"several precisions \(bf16, fp32\)"):
        one_precision([(fp32, {}), (bf16, {})])


def test_a_pair_is_mixed_when_its_runs_trained_on_more_than_one_kind():
    xeon, epyc = {"stretches": [_stretch(XEON)]}, {"stretches": [_stretch(EPYC)]}
    gpu = {"hardware": {"cpu": "Xeon", "gpu": "NVIDIA H200"}}
    resumed = {"stretches": [_stretch(XEON), _stretch(XEON, start=10)]}
    assert mixed_kinds(xeon, resumed) is None  # stopped and continued on the same kind
    # a record that begins at epoch 10 (stretches.json lost, then deleted): epochs 0-9 unknown
    lost = {"stretches": [_stretch(XEON, start=10)]}
    assert mixed_kinds(xeon, lost) == (XEON, UNRECORDED)
    assert mixed_kinds(xeon, epyc) == (XEON, EPYC)
    assert mixed_kinds({"hardware": {"cpu": EPYC}}, gpu) == (EPYC, "NVIDIA H200")
    # one run that moved between kinds mixes its pair even beside a run on one of them
    moved = {"stretches": [_stretch(XEON), _stretch(EPYC, start=30)]}
    assert mixed_kinds(moved, xeon) == (XEON, EPYC)
    # unrecorded: nothing to compare, counted apart
    assert mixed_kinds({}, epyc) is None and unrecorded({}, epyc) and not unrecorded(xeon, epyc)


def test_the_report_names_the_cpu_generations_a_kind_spans():
    from pathlib import Path

    from interspace_pruning.report.build import where_trained
    from interspace_pruning.report.collect import RunRecord

    kind = "AMD EPYC (avx512f, avx512-bf16)"
    zen4, zen5 = "AuthenticAMD family 25 model 17", "AuthenticAMD family 26 model 2"

    def record(*gens):
        stretches = [_stretch(kind, start=10 * i, end=10 * i + 10) for i in range(len(gens))]
        for s, gen in zip(stretches, gens, strict=True):
            if gen:
                s["cpu_id"] = gen
        return RunRecord(Path("x"), RunConfig(), {"test_acc": 0.5, "stretches": stretches})

    text = where_trained([record(None, zen5), record(zen4, zen5), record(zen4)])
    assert text.startswith(f"Trained: 3 on {kind} (")
    assert text.endswith(f"(runs on each): {zen4}: 2; {zen5}: 2.")
    assert "generations" not in where_trained([record(None)])  # older runs: nothing claimed
    idle = record(zen4)
    idle.summary["stretches"][0]["to_epoch"] = 0  # stopped before its first epoch
    assert "generations" not in where_trained([idle])
