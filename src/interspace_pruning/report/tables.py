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


def row_key(cfg: RunConfig) -> tuple[str, float]:
    """The table row a run belongs to, as ``(method label, sparsity)``.

    Dense runs and IP at sparsity 0 (dense training in the interspace) share the row
    ``("dense", 0.0)``, where the dense run is the SP side; pruning a trained model
    (``init_from``) gets its own label, apart from pruning at initialisation.
    """
    p = cfg.prune
    if p.representation.is_dense or p.sparsity == 0:
        return "dense", 0.0
    if cfg.model.init_from:
        return f"{p.method} (trained + fine-tune)", p.sparsity
    return p.method, p.sparsity


def side(cfg: RunConfig) -> str:
    """``sp`` or ``ip``: the column of a run (plain dense training counts as SP)."""
    return "ip" if cfg.prune.representation.is_interspace else "sp"


def seed_pairs(sp: dict[int, float], ip: dict[int, float]) -> list[float]:
    """``IP - SP`` for each seed that has a finite result on both sides, in seed order."""
    return [ip[s] - sp[s] for s in sorted(set(sp) & set(ip)) if len(finite([sp[s], ip[s]])) == 2]


def paired_diff(sp: dict[int, float], ip: dict[int, float]) -> tuple[str, str]:
    """``IP - SP`` per seed present in both, as ``"+m ± s (n=k)"`` in points, and the winner.

    The winner is the side ahead in every pair; otherwise ``mixed`` (``tie`` if all equal).
    """
    diffs = seed_pairs(sp, ip)
    if not diffs:
        return "-", "-"
    m, s = mean_std([d * 100 for d in diffs])
    if all(d > 0 for d in diffs):
        winner = "IP"
    elif all(d < 0 for d in diffs):
        winner = "SP"
    else:
        winner = "tie" if all(d == 0 for d in diffs) else "mixed"
    return f"{m:+.2f} ± {s:.2f} (n={len(diffs)})", winner


Cells = dict[tuple[str, float], dict[str, dict[int, float]]]


def seed_cells(results: Iterable[tuple[RunConfig, dict]], metric: str = "test_acc") -> Cells:
    """``cells[(method, sparsity)][side][seed] = summary[metric]`` (see :func:`row_key`)."""
    cells: Cells = defaultdict(lambda: defaultdict(dict))
    for cfg, summary in results:
        cells[row_key(cfg)][side(cfg)][cfg.train.seed] = summary.get(metric)
    return cells


def is_complete(reps: dict[str, dict[int, float]], min_seeds: int) -> bool:
    """Whether a row has ``min_seeds`` runs on each side; with 1, one-sided rows count too."""
    return min_seeds <= 1 or min(len(reps.get("sp", {})), len(reps.get("ip", {}))) >= min_seeds


def paired_differences(cells: Cells) -> dict[tuple[str, float], list[float]]:
    """IP - SP per seed present on both sides and finite, per row, in the metric's units."""
    pairs = {key: seed_pairs(reps.get("sp", {}), reps.get("ip", {})) for key, reps in cells.items()}
    return {key: diffs for key, diffs in sorted(pairs.items()) if diffs}


def ip_vs_sp_table(
    results: Iterable[tuple[RunConfig, dict]], metric: str = "test_acc", min_seeds: int = 1
) -> str:
    """One row per (method, sparsity): SP, IP and the IP - SP difference paired by seed.

    Dense training is the SP side of the ``dense`` row, dense training in the interspace
    (IP at sparsity 0) its IP side; the dense runs are also listed as the reference. Rows
    with fewer than ``min_seeds`` runs on a side are left out (and counted below the table),
    so that a table of complete cells does not change while a sweep adds runs.
    """
    results = list(results)
    cells = seed_cells(results, metric)
    dense = [s.get(metric) for cfg, s in results if cfg.prune.representation.is_dense]
    seeds = {cfg.train.seed for cfg, _ in results}
    lines = [
        "| method | sparsity | SP | IP | IP − SP (paired by seed) | winner |",
        "|---|---|---|---|---|---|",
    ]
    partial = 0
    for (method, sparsity), reps in sorted(cells.items()):
        sp, ip = list(reps["sp"].values()), list(reps["ip"].values())
        if method == "dense" and not ip:
            continue  # plain dense only: the reference line below
        if not is_complete(reps, min_seeds):
            partial += 1
            continue
        failed = [rep.upper() for rep, v in (("sp", sp), ("ip", ip)) if len(finite(v)) < len(v)]
        if failed:  # a NaN mean is no "tie": say which side diverged
            diff_s, winner = "-", f"none: {' and '.join(failed)} diverged"
        else:
            diff_s, winner = paired_diff(reps["sp"], reps["ip"])
        lines.append(
            f"| {method} | {sparsity:.0%} | {fmt_pct(sp) if sp else '-'} | "
            f"{fmt_pct(ip) if ip else '-'} | {diff_s} | {winner} |"
        )
    if dense and len(dense) >= min_seeds:
        lines.append(f"| dense | 0% | {fmt_pct(dense)} (reference) | | | |")
    lines.append("")
    if partial:
        lines.append(f"Left out: {partial} row(s) with fewer than {min_seeds} seeds on a side.")
        lines.append("")
    lines.append(
        f"{metric} in % over seeds {sorted(seeds)}: mean ± standard deviation; IP − SP is the "
        "mean ± standard deviation of the per-seed differences (same initial weights and data "
        "order), in points; the winner is ahead in every seed, else mixed."
    )
    return "\n".join(lines)


def per_seed_table(results: Iterable[tuple[RunConfig, dict]], metric: str = "test_acc") -> str:
    """One row per (method, sparsity), one column per seed: ``SP → IP (IP − SP)`` in %, the
    pairs behind the paired difference of :func:`ip_vs_sp_table` (``-`` where a side is
    missing)."""
    cells = seed_cells(results, metric)
    seeds = sorted({seed for reps in cells.values() for side in reps.values() for seed in side})

    def pct(v) -> str:
        return f"{v * 100:.2f}" if finite([v]) else "diverged" if v is not None else "-"

    lines = [
        "| method | sparsity | " + " | ".join(f"seed {s}: SP → IP (IP − SP)" for s in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for (method, sparsity), reps in sorted(cells.items()):
        sp, ip = reps.get("sp", {}), reps.get("ip", {})
        if method == "dense" and not ip:
            continue
        row = []
        for seed in seeds:
            a, b = sp.get(seed), ip.get(seed)
            diff = f" ({(b - a) * 100:+.2f})" if len(finite([a, b])) == 2 else ""
            row.append(f"{pct(a)} → {pct(b)}{diff}")
        lines.append(f"| {method} | {sparsity:.0%} | " + " | ".join(row) + " |")
    return "\n".join(lines)
