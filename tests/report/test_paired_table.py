"""The IP vs SP table: differences paired by seed, dense training in the interspace, and
pruning of trained models kept apart from pruning at initialisation."""

import statistics

from interspace_pruning.experiments import ModelConfig, PruneConfig, RunConfig
from interspace_pruning.report import ip_vs_sp_table
from interspace_pruning.training import TrainConfig


def _run(rep, method, sparsity, seed, acc, init_from=None, machine=None, precision="fp32"):
    cfg = RunConfig(
        model=ModelConfig(init_from=init_from),
        prune=PruneConfig(representation=rep, method=method, sparsity=sparsity),
        train=TrainConfig(seed=seed, precision=precision),
    )
    summary: dict = {"test_acc": acc}
    if machine is not None:
        summary["stretches"] = [{"machine": machine, "precision": precision, "from_epoch": 0}]
    return cfg, summary


def _row(table: str, method: str) -> list[str]:
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {method} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_difference_is_paired_by_seed_with_its_ci_and_test():
    from scipy import stats

    # seed offsets dominate the spread of each side; the paired differences are 2, 4, 3 points
    sp = {0: 0.50, 1: 0.60, 2: 0.70}
    ip = {0: 0.52, 1: 0.64, 2: 0.73}
    runs = [_run("sp", "snip", 0.98, s, a) for s, a in sp.items()]
    runs += [_run("ip", "snip", 0.98, s, a) for s, a in ip.items()]
    # random: IP ahead in two seeds, behind in one
    runs += [_run("sp", "random", 0.98, s, 0.5) for s in range(3)]
    runs += [_run("ip", "random", 0.98, s, a) for s, a in enumerate([0.52, 0.53, 0.49])]
    table = ip_vs_sp_table(runs)
    diff, p, p_holm, result = _row(table, "snip")[4:8]
    t = stats.ttest_rel([52, 64, 73], [50, 60, 70])
    ci = t.confidence_interval(0.95)
    assert diff == f"+3.00 [{ci.low:+.2f}, {ci.high:+.2f}]" and ci.low > 0
    assert p == f"{t.pvalue:.2g}" and 0.01 < t.pvalue < 0.05
    # ahead in every seed, p < 0.05, but not after Holm over the two rows: no winner
    r = stats.ttest_rel([52, 53, 49], [50, 50, 50]).pvalue
    # Holm over two tests: the smaller p doubled; the larger at least that
    expected = 2 * t.pvalue if t.pvalue < r else max(2 * r, t.pvalue)
    assert p_holm == f"{min(expected, 1.0):.2g}"
    assert result == "no significant difference"
    assert _row(table, "random")[7] == "no significant difference"


def test_a_holm_significant_difference_names_the_side():
    runs = [_run("sp", "snip", 0.98, s, 0.50 + s / 10) for s in range(4)]
    runs += [
        _run("ip", "snip", 0.98, s, 0.50 + s / 10 + d)
        for s, d in enumerate([0.03, 0.031, 0.029, 0.03])
    ]
    runs += [_run("sp", "rigl", 0.98, s, 0.60 + s / 10) for s in range(4)]
    runs += [
        _run("ip", "rigl", 0.98, s, 0.60 + s / 10 - d)
        for s, d in enumerate([0.05, 0.051, 0.049, 0.05])
    ]
    table = ip_vs_sp_table(runs)
    assert _row(table, "snip")[7] == "IP" and _row(table, "rigl")[7] == "SP"
    assert "All pairs of the table: 4 of 8 pairs favour IP" in table


def test_equal_pairs_have_no_test_and_no_winner():
    table = ip_vs_sp_table([_run("sp", "snip", 0.9, 0, 0.5), _run("ip", "snip", 0.9, 0, 0.5)])
    assert _row(table, "snip")[4:8] == ["+0.00 (n=1)", "-", "-", "no significant difference"]


def test_unpaired_seeds_give_no_difference():
    table = ip_vs_sp_table([_run("sp", "snip", 0.9, 0, 0.5), _run("ip", "snip", 0.9, 1, 0.6)])
    assert _row(table, "snip")[:8] == ["snip", "90%", "50.00", "60.00"] + ["-"] * 4


def test_dense_ip_is_compared_with_dense_and_trained_pruning_has_its_own_row():
    runs = [_run("dense", "snip", 0.98, s, a) for s, a in enumerate([0.80, 0.82])]
    runs += [_run("ip", "random", 0.0, s, a) for s, a in enumerate([0.81, 0.84])]
    runs += [_run("sp", "magnitude", 0.95, 0, 0.40), _run("ip", "magnitude", 0.95, 0, 0.45)]
    runs += [
        _run("sp", "magnitude", 0.95, 0, 0.70, init_from="runs/d0"),
        _run("ip", "magnitude", 0.95, 0, 0.74, init_from="runs/d0"),
    ]
    table = ip_vs_sp_table(runs)
    sd = statistics.stdev([80, 82])
    assert f"| dense | 0% | 81.00 ± {sd:.2f} | 82.50 ± " in table
    assert _row(table, "dense")[4].startswith("+1.50 [")
    assert f"| dense | 0% | 81.00 ± {sd:.2f} (reference) |" in table
    assert "| magnitude | 95% | 40.00 | 45.00 | +5.00 (n=1) |" in table
    trained = "| magnitude (trained + fine-tune) | 95% | 70.00 | 74.00 | +4.00"
    assert trained in table


def test_plain_dense_alone_is_only_the_reference_line():
    table = ip_vs_sp_table([_run("dense", "snip", 0.98, 0, 0.8), _run("sp", "snip", 0.9, 0, 0.5)])
    assert table.count("| dense |") == 1 and "(reference)" in table


def test_paired_differences_skip_unpaired_and_diverged_seeds():
    from interspace_pruning.report.tables import paired_differences, seed_cells

    runs = [_run("sp", "snip", 0.98, s, a) for s, a in enumerate([0.50, 0.60, float("nan")])]
    runs += [_run("ip", "snip", 0.98, s, a) for s, a in enumerate([0.52, 0.57, 0.70, 0.9])]
    runs += [_run("sp", "random", 0.9, 0, 0.5)]  # no IP side: no row
    diffs = paired_differences(seed_cells(runs))
    assert list(diffs) == [("snip", 0.98)]
    assert [round(d, 6) for d in diffs[("snip", 0.98)]] == [0.02, -0.03]


def test_min_seeds_keeps_only_complete_cells():
    runs = [_run("sp", "snip", 0.98, s, 0.5) for s in range(3)]
    runs += [_run("ip", "snip", 0.98, s, 0.6) for s in range(3)]
    runs += [_run("sp", "rigl", 0.98, s, 0.5) for s in range(3)]
    runs += [_run("ip", "rigl", 0.98, 0, 0.6)]  # 1 of 3 seeds so far
    runs += [_run("dense", "snip", 0.98, s, 0.8) for s in range(2)]
    full, complete = ip_vs_sp_table(runs), ip_vs_sp_table(runs, min_seeds=3)
    assert "| rigl |" in full and "| rigl |" not in complete
    assert "(reference)" in full and "(reference)" not in complete  # 2 dense seeds
    snip = next(line for line in full.splitlines() if line.startswith("| snip |"))
    assert snip in complete.splitlines()
    assert "Left out: 1 row with fewer than 3 seeds on a side." in complete


def test_per_seed_table_shows_each_pair():
    from interspace_pruning.report.tables import per_seed_table

    runs = [_run("sp", "snip", 0.98, 0, 0.50), _run("ip", "snip", 0.98, 0, 0.54)]
    runs += [_run("sp", "snip", 0.98, 1, 0.60), _run("ip", "snip", 0.98, 1, float("nan"))]
    runs += [_run("sp", "snip", 0.98, 2, 0.55)]
    rows = per_seed_table(runs).splitlines()
    assert rows[0].count("seed ") == 3
    assert rows[2] == "| snip | 98% | 50.00 → 54.00 (+4.00) | 60.00 → diverged | 55.00 → - |"


def test_a_row_with_one_side_only_is_shown_by_default():
    table = ip_vs_sp_table([_run("sp", "snip", 0.9, 0, 0.5)])
    assert _row(table, "snip")[:8] == ["snip", "90%", "50.00"] + ["-"] * 5
    assert "Left out" not in table


def test_the_parameter_matched_control_has_its_own_table():
    def matched(seed, acc):
        cfg = RunConfig(
            prune=PruneConfig(
                representation="sp", method="snip", sparsity=0.98, param_matched=True
            ),
            train=TrainConfig(seed=seed),
        )
        return cfg, {"test_acc": acc, "sparsity": 0.9743, "nonzero": 6906, "basis_params": 0}

    runs = [_run("sp", "snip", 0.98, s, 0.48 + s / 100) for s in range(3)]
    runs += [_run("ip", "snip", 0.98, s, 0.53 + s / 100) for s in range(3)]
    runs += [matched(s, 0.50 + s / 100 + d) for s, d in enumerate([0.0, 0.01, -0.01])]
    table = ip_vs_sp_table(runs)
    main_rows = [ln for ln in table.split("The parameter-matched")[0].splitlines()]
    assert sum(ln.startswith("| snip |") for ln in main_rows) == 2  # main table + control
    control = table.splitlines()[
        next(i for i, ln in enumerate(table.splitlines()) if "SP at IP's parameter count" in ln) + 2
    ]
    cols = [c.strip() for c in control.strip("|").split("|")]
    assert cols[:5] == ["snip", "98%", "49.00 ± 1.00", "51.00 ± 1.00 at 97.43%", "54.00 ± 1.00"]
    assert cols[5].startswith("+3.00 [") and cols[10] == "- / 6,906 / -" and len(cols) == 12
    # the control closes (51 − 49) / (54 − 49) = 40% of the gap, with Fieller's interval
    from interspace_pruning.experiments.stats import ratio

    share = ratio([2.0, 3.0, 1.0], [5.0] * 3)  # control − SP and IP − SP per seed
    assert share.low is not None
    assert cols[9] == f"40% [{share.low:.0%}, {share.high:.0%}]"
    assert "⚠" not in table  # no machine recorded: nothing marked


def test_the_cells_are_tested_as_units_beside_the_pooled_pairs():
    from scipy import stats

    gaps = {"snip": [2, 3, 4], "grasp": [5, 6, 8], "rigl": [-1, 0.5, -2], "set": [1, 2, 1.5]}
    runs = []
    for method, diffs in gaps.items():
        for seed, d in enumerate(diffs):
            runs += [
                _run("sp", method, 0.95, seed, 0.5),
                _run("ip", method, 0.95, seed, 0.5 + d / 100),
            ]
    table = ip_vs_sp_table(runs)
    means = [sum(d) / 3 for d in (gaps["grasp"], gaps["rigl"], gaps["set"], gaps["snip"])]
    w = stats.wilcoxon(means).pvalue
    line = next(ln for ln in table.splitlines() if ln.startswith("With the cells as the units"))
    assert "3 of 4 cells favour IP" in line and f"Wilcoxon signed-rank p = {w:.2g}" in line
    assert "not independent" in line and "share the seeds" in line
    assert "All pairs of the table: 10 of 12 pairs favour IP" in table


def test_the_spread_behind_a_holm_win_is_named():
    runs = []
    for method, diffs in {
        "gmp": [2.8, 2.9, 2.7, 2.8],
        "snip": [1, 6, 3, 4],
        "set": [0, 3, 1, 5],
    }.items():
        for seed, d in enumerate(diffs):
            runs += [
                _run("sp", method, 0.95, seed, 0.5),
                _run("ip", method, 0.95, seed, 0.5 + d / 100),
            ]
    table = ip_vs_sp_table(runs)
    assert _row(table, "gmp")[7] == "IP"
    line = next(ln for ln in table.splitlines() if ln.startswith("Per-seed standard deviation"))
    assert (
        "from 0.08 (gmp 95%)" in line
        and "gmp 95%, a Holm-significant row, has the smallest" in line
    )


def test_pairs_on_different_kinds_of_machine_are_marked_and_counted():
    xeon, epyc, gpu = "Intel Xeon (avx512f, amx)", "AMD EPYC (avx2)", "NVIDIA H200"
    runs = []
    for seed, (d, ip_on) in enumerate([(3, xeon), (4, gpu), (2, xeon)]):
        runs += [_run("sp", "snip", 0.98, seed, 0.5, machine=xeon)]
        runs += [_run("ip", "snip", 0.98, seed, 0.5 + d / 100, machine=ip_on)]
    for seed in range(3):
        runs += [_run("sp", "rigl", 0.98, seed, 0.5, machine=epyc)]
        runs += [_run("ip", "rigl", 0.98, seed, 0.51 + seed / 100, machine=epyc)]
    table = ip_vs_sp_table(runs)
    assert _row(table, "snip")[7] == "no significant difference ⚠ mixed machines in 1 of 3 seeds"
    assert "⚠" not in _row(table, "rigl")[7]
    assert f"- ⚠ snip 98%: seed 1: SP on {xeon}, IP on {gpu}" in table
    assert "⚠ 1 of these 6 pairs trained on two kinds of machine." in table

    from interspace_pruning.report.tables import per_seed_table

    row = next(ln for ln in per_seed_table(runs).splitlines() if ln.startswith("| snip |"))
    assert row.split("|")[4].strip().endswith("⚠") and "⚠" not in row.split("|")[3]


def test_unrecorded_machines_are_counted_not_called_mixed():
    runs = [_run("sp", "snip", 0.98, s, 0.5, machine="AMD EPYC (avx2)") for s in range(2)]
    runs += [_run("ip", "snip", 0.98, 0, 0.53), _run("ip", "snip", 0.98, 1, 0.54)]
    table = ip_vs_sp_table(runs)
    assert "⚠" not in table
    assert (
        "none of the 2 pairs trained on two kinds of machine (2 have a side whose machine" in table
    )


def test_runs_of_different_precisions_never_share_a_table():
    import pytest

    runs = [_run("sp", "snip", 0.98, 0, 0.5), _run("ip", "snip", 0.98, 0, 0.53, precision="bf16")]
    with pytest.raises(ValueError, match=r"several precisions \(bf16, fp32\)"):
        ip_vs_sp_table(runs)
    bf16 = [_run(r, "snip", 0.98, 0, 0.5, precision="bf16") for r in ("sp", "ip")]
    assert ", trained in bf16:" in ip_vs_sp_table(bf16)


def test_a_control_on_another_kind_of_machine_is_marked():
    def matched(seed, acc, machine):
        cfg = RunConfig(
            prune=PruneConfig(representation="sp", method="gmp", sparsity=0.95, param_matched=True),
            train=TrainConfig(seed=seed),
        )
        return cfg, {"test_acc": acc, "stretches": [{"machine": machine, "precision": "fp32"}]}

    gpu, cpu = "NVIDIA H200", "AMD EPYC (avx2)"
    runs = [_run("sp", "gmp", 0.95, s, 0.57 + s / 100, machine=gpu) for s in range(3)]
    runs += [_run("ip", "gmp", 0.95, s, 0.60 + s / 50, machine=gpu) for s in range(3)]
    runs += [matched(s, 0.57 + s / 100 + d, cpu) for s, d in enumerate([0.0, 0.01, -0.005])]
    table = ip_vs_sp_table(runs)
    control = table.split("SP at IP's parameter count | IP |")[1]
    assert "⚠ mixed machines in 3 of 3 seeds" in control
    assert (
        f"- ⚠ gmp 95%: seeds 0, 1, 2: SP on {gpu}, SP at IP's parameter count on {cpu}, IP on {gpu}"
    ) in control


def test_a_table_with_no_complete_row_is_one_line_not_an_empty_table():
    runs = [_run("sp", "snip", 0.98, s, 0.5) for s in range(3)]
    runs += [_run("ip", "snip", 0.98, s, 0.6) for s in range(2)]  # 2 of 3 seeds so far
    table = ip_vs_sp_table(runs, min_seeds=3)
    assert table == ("No row has 3 seeds on each side yet: 1 row left out until their runs finish.")
    assert "| snip |" in ip_vs_sp_table(runs, min_seeds=2)
