"""Paired statistics for IP vs SP tables: per cell a paired t-test with the 95% confidence
interval of the mean difference; across a table's cells a Holm correction; over all pairs, and
over the cells' mean differences (one per cell), a Wilcoxon signed-rank and a sign test; a
Fieller interval for the ratio of two paired mean differences. The tests are scipy's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: A difference is called a win only when its Holm-adjusted p-value is below this.
ALPHA = 0.05


@dataclass(frozen=True)
class Paired:
    """The paired differences of one cell (IP − SP, one per seed) and their test."""

    diffs: tuple[float, ...]
    mean: float
    low: float | None  # the 95% confidence interval of the mean (None with fewer than 2)
    high: float | None
    p: float | None  # two-sided paired t-test (None with fewer than 2, or no spread)

    @property
    def n(self) -> int:
        return len(self.diffs)


def paired(ip: Sequence[float], sp: Sequence[float], level: float = 0.95) -> Paired:
    """``ip[i] − sp[i]``: their mean, its ``level`` confidence interval (Student's t) and
    the two-sided paired t-test of a zero mean (``scipy.stats.ttest_rel``)."""
    from scipy import stats

    diffs = tuple(a - b for a, b in zip(ip, sp, strict=True))
    if not diffs:
        raise ValueError("no pairs")
    mean = math.fsum(diffs) / len(diffs)
    if len(diffs) < 2 or max(diffs) == min(diffs):  # no spread: no t-test (mean is exact)
        return Paired(diffs, mean, None, None, None)
    res = stats.ttest_rel(ip, sp)
    ci = res.confidence_interval(level)
    return Paired(diffs, mean, float(ci.low), float(ci.high), float(res.pvalue))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``pvalues`` (``None`` entries are not tests and stay
    ``None``): the i-th smallest of m is multiplied by m − i + 1, kept monotone, capped at 1."""
    tests = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(tests)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tests):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def verdict(cell: Paired, p_holm: float | None) -> str:
    """``IP`` or ``SP`` when the Holm-adjusted p is below :data:`ALPHA`, else no winner."""
    if p_holm is not None and p_holm < ALPHA:
        return "IP" if cell.mean > 0 else "SP"
    return "no significant difference"


def pooled(diffs: Sequence[float]) -> str:
    """One sentence on all pairs of a table: how many favour IP, the mean, and two tests of
    a zero median (Wilcoxon signed-rank; sign test of positive vs negative pairs)."""
    return _signed(diffs, "pairs", "mean IP − SP")


def by_cell(means: Sequence[float]) -> str:
    """One sentence with the cells as the units: how many cells' mean IP − SP favour IP,
    their mean, and the Wilcoxon signed-rank and sign tests over those means (one per cell).
    Pairs of a table are not independent (the cells share seeds and data orders, cells that
    fine-tune trained models share those models), so the pooled tests over pairs overstate
    the evidence; this test counts each cell once."""
    return _signed(means, "cells", "mean of the cells' mean IP − SP")


def _signed(values: Sequence[float], units: str, what: str) -> str:
    if not values:
        raise ValueError(f"no {units} to test")
    nonzero = [d for d in values if d != 0]
    up = sum(d > 0 for d in nonzero)
    mean = math.fsum(values) / len(values)
    text = f"{up} of {len(values)} {units} favour IP, {what} {mean:+.2f} points"
    if len(nonzero) < 2:
        return text + f" (too few {units} for a test)"
    from scipy import stats

    w = stats.wilcoxon(values).pvalue
    sign = stats.binomtest(up, len(nonzero)).pvalue
    return text + f"; Wilcoxon signed-rank {p_is(w)}, sign test {p_is(sign)}"


@dataclass(frozen=True)
class Ratio:
    """``mean(num) / mean(den)`` of paired samples with its Fieller confidence interval;
    ``low``/``high`` are None where the interval is unbounded (the denominator's mean is not
    distinguishable from zero at that level) or there are too few pairs."""

    estimate: float
    low: float | None
    high: float | None


def ratio(num: Sequence[float], den: Sequence[float], level: float = 0.95) -> Ratio:
    """Fieller's interval for ``mean(num) / mean(den)``, ``num[i]`` and ``den[i]`` measured
    on one unit (a seed): the ratios r whose paired t-test of ``num − r·den`` has p above
    ``1 − level``. E.g. the share of IP − SP that a control explains: num = control − SP,
    den = IP − SP, per seed."""
    from scipy import stats

    n = len(num)
    if n != len(den) or n == 0:
        raise ValueError(f"ratio needs paired samples, got {n} and {len(den)} values")
    x, y = math.fsum(num) / n, math.fsum(den) / n
    if y == 0:
        raise ValueError("the denominator's mean is 0: no ratio")
    if n < 2:
        return Ratio(x / y, None, None)
    sxx = math.fsum((a - x) ** 2 for a in num) / (n - 1) / n
    syy = math.fsum((b - y) ** 2 for b in den) / (n - 1) / n
    sxy = math.fsum((a - x) * (b - y) for a, b in zip(num, den, strict=True)) / (n - 1) / n
    t2 = float(stats.t.ppf(0.5 + level / 2, n - 1)) ** 2
    # (x − r y)² ≤ t² (sxx − 2 r sxy + r² syy): a quadratic a r² + b r + c ≤ 0
    a, b, c = y * y - t2 * syy, -2 * (x * y - t2 * sxy), x * x - t2 * sxx
    disc = b * b - 4 * a * c
    if a <= 0 or disc < 0:
        return Ratio(x / y, None, None)
    root = math.sqrt(disc)
    return Ratio(x / y, (-b - root) / (2 * a), (-b + root) / (2 * a))


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "-"
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def p_is(p: float) -> str:
    """``p = 0.031`` or ``p < 0.001``."""
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def fmt_ci(cell: Paired) -> str:
    """``+3.00 [+0.52, +5.48]`` (points), or the mean alone for one pair or no spread."""
    if cell.low is None:
        return f"{cell.mean:+.2f} (n={cell.n})"
    return f"{cell.mean:+.2f} [{cell.low:+.2f}, {cell.high:+.2f}]"
