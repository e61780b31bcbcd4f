"""Result tables: mean and standard deviation over seeds, IP - SP differences, as Markdown."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable

from ..experiments.config import RunConfig


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt_pct(values: list[float]) -> str:
    """``mean ± std`` in %; runs that diverged (NaN/inf, or None) are counted, not averaged."""
    good = finite(values)
    bad = len(values) - len(good)
    if not good:
        return f"diverged ({bad} of {bad})"
    m, s = mean_std(good)
    return f"{m * 100:.2f} ± {s * 100:.2f}" + (f" ({bad} of {len(values)} diverged)" if bad else "")


def finite(values: list) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def ip_vs_sp_table(results: Iterable[tuple[RunConfig, dict]], metric: str = "test_acc") -> str:
    """One row per (method, sparsity): SP, IP, IP - SP; dense as a reference line."""
    cells: dict[tuple[str, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    dense: list[float] = []
    seeds: set[int] = set()
    for cfg, summary in results:
        seeds.add(cfg.train.seed)
        if cfg.prune.representation == "dense":
            dense.append(summary.get(metric))
        else:
            key = (cfg.prune.method, cfg.prune.sparsity)
            cells[key][cfg.prune.representation].append(summary.get(metric))
    lines = [
        "| method | sparsity | SP | IP | IP − SP | winner |",
        "|---|---|---|---|---|---|",
    ]
    for (method, sparsity), reps in sorted(cells.items()):
        sp, ip = reps.get("sp", []), reps.get("ip", [])
        failed = [rep.upper() for rep, v in (("sp", sp), ("ip", ip)) if len(finite(v)) < len(v)]
        if failed:  # a NaN mean is no "tie": say which side diverged
            diff_s, winner = "-", f"none: {' and '.join(failed)} diverged"
        elif sp and ip:
            diff = statistics.fmean(ip) - statistics.fmean(sp)
            winner = "IP" if diff > 0 else ("SP" if diff < 0 else "tie")
            diff_s = f"{diff * 100:+.2f}"
        else:
            diff_s, winner = "-", "-"
        lines.append(
            f"| {method} | {sparsity:.0%} | {fmt_pct(sp) if sp else '-'} | "
            f"{fmt_pct(ip) if ip else '-'} | {diff_s} | {winner} |"
        )
    if dense:
        lines.append(f"| dense | 0% | {fmt_pct(dense)} (reference) | | | |")
    lines.append("")
    lines.append(f"{metric} in % over seeds {sorted(seeds)}: mean ± standard deviation.")
    return "\n".join(lines)
