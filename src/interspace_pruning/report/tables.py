"""Result tables: mean and standard deviation over seeds, IP - SP differences, as Markdown."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from ..experiments.config import RunConfig
from ..experiments.stats import ALPHA, Paired, fmt_ci, fmt_p, holm, paired, pooled, verdict


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
    """``sp``, ``ip`` or ``sp_matched`` (the SP control at IP's parameter count): the column
    of a run (plain dense training counts as SP)."""
    if cfg.prune.param_matched:
        return "sp_matched"
    return "ip" if cfg.prune.representation.is_interspace else "sp"


def seed_pairs(sp: dict[int, float], ip: dict[int, float]) -> list[float]:
    """``IP - SP`` for each seed that has a finite result on both sides, in seed order."""
    return [ip[s] - sp[s] for s in paired_seeds(sp, ip)]


def paired_seeds(sp: dict[int, float], ip: dict[int, float]) -> list[int]:
    """The seeds with a finite result on both sides, in order."""
    return [s for s in sorted(set(sp) & set(ip)) if len(finite([sp[s], ip[s]])) == 2]


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


Costs = dict[tuple[tuple[str, float], str], dict[str, list[float]]]


def side_costs(results: Iterable[tuple[RunConfig, dict]]) -> Costs:
    """Per row and side: the trainable parameters of the pruned layers (nonzeros plus
    filter-basis entries) and the sparse FLOPs per sample of each run that records them."""
    out: Costs = defaultdict(lambda: defaultdict(list))
    for cfg, s in results:
        key = (row_key(cfg), side(cfg))
        if isinstance(s.get("nonzero"), int):
            out[key]["trainable"].append(s["nonzero"] + int(s.get("basis_params") or 0))
        if finite([s.get("sparse_flops")]):
            out[key]["flops"].append(s["sparse_flops"])
    return out


def _mean_of(values: list[float], fmt: str) -> str:
    return format(statistics.fmean(values), fmt) if values else "-"


def _costs_cell(costs: Costs, key: tuple[str, float], sides: Sequence[str], what: str) -> str:
    fmt, scale = (",.0f", 1.0) if what == "trainable" else (".2f", 1e-6)
    cells = [_mean_of([v * scale for v in costs[(key, s)][what]], fmt) for s in sides]
    return " / ".join(cells)


def _stats_rows(
    cells: Cells, keys: list[tuple[str, float]], left: str
) -> dict[tuple[str, float], tuple[Paired | None, float | None]]:
    """IP − ``left`` per row (in points), with its Holm-adjusted p across ``keys``."""
    tests: dict[tuple[str, float], Paired | None] = {}
    for key in keys:
        reps = cells[key]
        seeds = paired_seeds(reps.get(left, {}), reps.get("ip", {}))
        tests[key] = (
            paired([reps["ip"][s] * 100 for s in seeds], [reps[left][s] * 100 for s in seeds])
            if seeds
            else None
        )
    adjusted = holm([t.p if t is not None else None for t in tests.values()])
    return {k: (t, q) for (k, t), q in zip(tests.items(), adjusted, strict=True)}


def _result(test: Paired | None, p_holm: float | None, failed: list[str]) -> list[str]:
    if failed:  # a NaN mean is no "tie": say which side diverged
        return ["-", "-", "-", f"none: {' and '.join(failed)} diverged"]
    if test is None:
        return ["-", "-", "-", "-"]
    return [fmt_ci(test), fmt_p(test.p), fmt_p(p_holm), verdict(test, p_holm)]


def ip_vs_sp_table(
    results: Iterable[tuple[RunConfig, dict]], metric: str = "test_acc", min_seeds: int = 1
) -> str:
    """One row per (method, sparsity): SP and IP (mean ± std over seeds), IP − SP paired by
    seed with its 95% confidence interval, the two-sided paired t-test, its Holm-adjusted
    p across the table's rows, the result (a side only when Holm-significant), and each
    side's trainable parameters and sparse MFLOPs. Below it, all pairs pooled (Wilcoxon
    signed-rank, sign test), and the parameter-matched control where runs of it exist
    (:func:`matched_table`).

    Dense training is the SP side of the ``dense`` row, dense training in the interspace
    (IP at sparsity 0) its IP side; the dense runs are also listed as the reference. Rows
    with fewer than ``min_seeds`` runs on a side are left out (and counted below the table),
    so that a table of complete cells does not change while a sweep adds runs.
    """
    results = list(results)
    cells = seed_cells(results, metric)
    costs = side_costs(results)
    dense = [s.get(metric) for cfg, s in results if cfg.prune.representation.is_dense]
    seeds = {cfg.train.seed for cfg, _ in results}
    lines = [
        "| method | sparsity | SP | IP | IP − SP [95% CI] | p | p (Holm) | result "
        "| trainable SP / IP | MFLOPs SP / IP |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown, partial = [], 0
    for key, reps in sorted(cells.items()):
        if key[0] == "dense" and not reps.get("ip"):
            continue  # plain dense only: the reference line below
        if not reps.get("sp") and not reps.get("ip"):
            continue  # a control alone: its own table
        if not is_complete(reps, min_seeds):
            partial += 1
            continue
        shown.append(key)
    tests = _stats_rows(cells, shown, "sp")
    pairs: list[float] = []
    for key in shown:
        reps = cells[key]
        sp, ip = list(reps.get("sp", {}).values()), list(reps.get("ip", {}).values())
        failed = [rep.upper() for rep, v in (("sp", sp), ("ip", ip)) if len(finite(v)) < len(v)]
        test, p_holm = tests[key]
        if test is not None and not failed:
            pairs += test.diffs
        cols = [
            key[0],
            f"{key[1]:.0%}",
            fmt_pct(sp) if sp else "-",
            fmt_pct(ip) if ip else "-",
            *_result(test, p_holm, failed),
            _costs_cell(costs, key, ("sp", "ip"), "trainable"),
            _costs_cell(costs, key, ("sp", "ip"), "flops"),
        ]
        lines.append("| " + " | ".join(cols) + " |")
    if dense and len(dense) >= min_seeds:
        lines.append(f"| dense | 0% | {fmt_pct(dense)} (reference) | | | | | | | |")
    lines.append("")
    if partial:
        lines.append(f"Left out: {partial} row(s) with fewer than {min_seeds} seeds on a side.")
        lines.append("")
    lines.append(
        f"{metric} in % over seeds {sorted(seeds)}: mean ± standard deviation. IP − SP: the "
        "mean of the per-seed differences (same initial weights and data order) in points, "
        "with its 95% confidence interval; p: two-sided paired t-test; p (Holm): corrected "
        f"for the {sum(t is not None and t.p is not None for t, _ in tests.values())} rows "
        f"tested; a side is named only when p (Holm) < {ALPHA}. Trainable: nonzero weights "
        "or coefficients plus filter-basis entries; MFLOPs: sparse, per sample."
    )
    if pairs:
        lines += ["", f"All pairs of the table: {pooled(pairs)}."]
    matched = matched_table(results, metric, min_seeds)
    if matched:
        lines += ["", matched]
    return "\n".join(lines)


def matched_table(
    results: Iterable[tuple[RunConfig, dict]], metric: str = "test_acc", min_seeds: int = 1
) -> str:
    """The parameter-matched control: per row that has it, SP at IP's trainable-parameter
    count (``--param-matched``) beside SP and IP, and IP − that control with its test (Holm
    across these rows). Empty if no run of the control exists."""
    results = list(results)
    cells = seed_cells(results, metric)
    costs = side_costs(results)
    keys = [
        k
        for k, reps in sorted(cells.items())
        if reps.get("sp_matched")
        and is_complete({"sp": reps["sp_matched"], "ip": reps.get("ip", {})}, min_seeds)
    ]
    if not keys:
        return ""
    achieved: dict[tuple[str, float], list[float]] = defaultdict(list)
    for cfg, s in results:
        if cfg.prune.param_matched and finite([s.get("sparsity")]):
            achieved[row_key(cfg)].append(s["sparsity"])
    tests = _stats_rows(cells, keys, "sp_matched")
    lines = [
        "| method | sparsity | SP | SP at IP's parameter count | IP | IP − it [95% CI] | p "
        "| p (Holm) | result | trainable SP / it / IP | MFLOPs SP / it / IP |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        reps = cells[key]
        sp = list(reps.get("sp", {}).values())
        ctl, ip = list(reps["sp_matched"].values()), list(reps.get("ip", {}).values())
        failed = [n for n, v in (("SP", ctl), ("IP", ip)) if len(finite(v)) < len(v)]
        at = f" at {statistics.fmean(achieved[key]):.2%}" if achieved[key] else ""
        cols = [
            key[0],
            f"{key[1]:.0%}",
            fmt_pct(sp) if sp else "-",
            (fmt_pct(ctl) if ctl else "-") + at,
            fmt_pct(ip) if ip else "-",
            *_result(*tests[key], failed),
            _costs_cell(costs, key, ("sp", "sp_matched", "ip"), "trainable"),
            _costs_cell(costs, key, ("sp", "sp_matched", "ip"), "flops"),
        ]
        lines.append("| " + " | ".join(cols) + " |")
    lines += [
        "",
        "The parameter-matched control (`--param-matched`): SP pruned to the sparsity at which "
        "it keeps as many weights as IP trains (IP's nonzero coefficients plus its filter-basis "
        "entries), from the same initial weights and data order; IP − it is paired by seed, "
        "p (Holm) corrected for these rows.",
    ]
    return "\n".join(lines)


def length_curve(
    results: Iterable[tuple[RunConfig, dict]], min_seeds: int = 2, metric: str = "test_acc"
) -> dict[tuple[str, float], list[tuple[int, Paired]]]:
    """Per (method, sparsity) trained at several lengths: ``[(epochs, IP − SP test)]`` in
    points, for each length with at least ``max(min_seeds, 2)`` pairs."""
    by_length: dict[int, list] = defaultdict(list)
    for cfg, s in results:
        by_length[cfg.train.epochs].append((cfg, s))
    curve: dict[tuple[str, float], list[tuple[int, Paired]]] = defaultdict(list)
    for epochs, rows in sorted(by_length.items()):
        for key, reps in seed_cells(rows, metric).items():
            seeds = paired_seeds(reps.get("sp", {}), reps.get("ip", {}))
            if key[0] != "dense" and len(seeds) >= max(min_seeds, 2):
                ip = [reps["ip"][s] * 100 for s in seeds]
                curve[key].append((epochs, paired(ip, [reps["sp"][s] * 100 for s in seeds])))
    return {k: v for k, v in curve.items() if len(v) > 1}


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
