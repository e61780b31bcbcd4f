"""The report's statistics: scipy's paired t-test and CI, Holm's adjustment, pooled tests,
the test with the cells as the units, and Fieller's interval for a ratio of paired means."""

import pytest
from scipy import stats

from interspace_pruning.experiments.stats import (
    Ratio,
    by_cell,
    fmt_ci,
    holm,
    paired,
    pooled,
    ratio,
    verdict,
)


def test_holm_matches_the_textbook_example():
    # Holm (1979) step-down: sorted p times m, m-1, ..., kept monotone, capped at 1
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []


def test_paired_is_scipys_t_test_and_interval():
    ip, sp = [52.0, 64.0, 73.0, 60.0], [50.0, 60.0, 70.0, 59.0]
    cell = paired(ip, sp)
    ref = stats.ttest_rel(ip, sp)
    ci = ref.confidence_interval(0.95)
    assert cell.p == pytest.approx(ref.pvalue) and cell.mean == pytest.approx(2.5)
    assert (cell.low, cell.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert fmt_ci(cell) == f"+2.50 [{ci.low:+.2f}, {ci.high:+.2f}]"


def test_one_pair_or_no_spread_has_no_test():
    assert paired([1.0], [0.0]).p is None
    flat = paired([2.0, 3.0], [1.0, 2.0])
    assert flat.p is None and flat.low is None and fmt_ci(flat) == "+1.00 (n=2)"
    assert verdict(flat, None) == "no significant difference"


def test_a_side_is_named_only_below_alpha_after_correction():
    cell = paired([3.0, 2.0, 4.0], [1.0, 1.0, 1.0])
    assert verdict(cell, 0.049) == "IP" and verdict(cell, 0.051) == "no significant difference"
    worse = paired([1.0, 1.0, 1.0], [3.0, 2.0, 4.0])
    assert verdict(worse, 0.01) == "SP"


def test_pooled_reports_wilcoxon_and_sign_test():
    diffs = [1.0, 2.0, -0.5, 3.0, 1.5, 2.5, 0.5, 1.0]
    text = pooled(diffs)
    w, s = stats.wilcoxon(diffs).pvalue, stats.binomtest(7, 8).pvalue
    assert text.startswith("7 of 8 pairs favour IP, mean IP − SP +1.38 points")
    assert f"Wilcoxon signed-rank p = {w:.2g}" in text and f"sign test p = {s:.2g}" in text
    assert pooled([1.0]).endswith("(too few pairs for a test)")


def test_the_cell_level_test_counts_each_cell_once():
    # one mean IP − SP per cell: 5 of 6 cells favour IP
    means = [2.8, 4.9, -0.9, 1.3, 6.6, 0.4]
    text = by_cell(means)
    w, s = stats.wilcoxon(means).pvalue, stats.binomtest(5, 6).pvalue
    assert text.startswith("5 of 6 cells favour IP, mean of the cells' mean IP − SP +2.52 points")
    assert f"Wilcoxon signed-rank p = {w:.2g}" in text and f"sign test p = {s:.2g}" in text
    # with many pairs per cell the pooled test is far smaller than the one over cells
    pairs = [m + e for m in means for e in (-0.1, 0.0, 0.1)]
    assert stats.wilcoxon(pairs).pvalue < w
    assert by_cell([1.0]).endswith("(too few cells for a test)")
    with pytest.raises(ValueError, match="no cells"):
        by_cell([])


def test_fieller_interval_ends_where_the_t_test_reaches_alpha():
    # share of a gap closed by a control, per seed: num = control − SP, den = IP − SP
    num, den = [2.25, 1.46, 3.47], [3.90, 4.69, 6.10]
    r = ratio(num, den)
    assert r.estimate == pytest.approx(sum(num) / sum(den))
    assert r.low < r.estimate < r.high
    for end in (r.low, r.high):  # the ratios the paired t-test of num − r·den just rejects
        z = [a - end * b for a, b in zip(num, den, strict=True)]
        assert stats.ttest_1samp(z, 0.0).pvalue == pytest.approx(0.05, abs=1e-9)
    inside = [a - r.estimate * b for a, b in zip(num, den, strict=True)]
    assert stats.ttest_1samp(inside, 0.0).pvalue > 0.05


def test_fieller_interval_is_unbounded_when_the_denominator_may_be_zero():
    r = ratio([1.5, 0.7, 8.0], [6.6, 0.8, -2.0])  # IP − SP not distinguishable from 0
    assert r.low is None and r.high is None and r.estimate == pytest.approx(10.2 / 5.4)
    assert ratio([1.0], [2.0]) == Ratio(0.5, None, None)  # one pair: no interval
    with pytest.raises(ValueError, match="paired samples"):
        ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="mean is 0"):
        ratio([1.0, 2.0], [1.0, -1.0])
