"""The IP vs SP table: differences paired by seed, dense training in the interspace, and
pruning of trained models kept apart from pruning at initialisation."""

import statistics

from interspace_pruning.experiments import ModelConfig, PruneConfig, RunConfig
from interspace_pruning.report import ip_vs_sp_table
from interspace_pruning.training import TrainConfig


def _run(rep, method, sparsity, seed, acc, init_from=None):
    cfg = RunConfig(
        model=ModelConfig(init_from=init_from),
        prune=PruneConfig(representation=rep, method=method, sparsity=sparsity),
        train=TrainConfig(seed=seed),
    )
    return cfg, {"test_acc": acc}


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
    assert _row(table, "snip")[:8] == ["snip", "90%", "50.00 ± 0.00", "60.00 ± 0.00"] + ["-"] * 4


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
    assert "| magnitude | 95% | 40.00 ± 0.00 | 45.00 ± 0.00 | +5.00 (n=1) |" in table
    trained = "| magnitude (trained + fine-tune) | 95% | 70.00 ± 0.00 | 74.00 ± 0.00 | +4.00"
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
    assert "Left out: 1 row(s) with fewer than 3 seeds on a side." in complete


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
    assert _row(table, "snip")[:8] == ["snip", "90%", "50.00 ± 0.00"] + ["-"] * 5
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
    assert cols[5].startswith("+3.00 [") and cols[9] == "- / 6,906 / -" and len(cols) == 11
