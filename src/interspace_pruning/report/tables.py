"""Result tables: mean and standard deviation over seeds, IP - SP differences, as Markdown.

A table holds runs of one precision (:func:`.machines.one_precision`); a pair whose runs
trained on different kinds of machine is marked with :data:`.machines.MIXED` and named below
the table."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from ..experiments.config import RunConfig
from ..experiments.stats import (
    ALPHA,
    Paired,
    by_cell,
    fmt_ci,
    fmt_p,
    holm,
    paired,
    pooled,
    ratio,
    verdict,
)
from .machines import MIXED, machine_label, mixed_kinds, one_precision, unrecorded
from .markdown import md


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
    spread = f" ± {s * 100:.2f}" if len(good) > 1 else ""  # one seed has no spread to show
    return f"{m * 100:.2f}{spread}" + (f" ({bad} of {len(values)} diverged)" if bad else "")


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


Summaries = dict[tuple[str, float], dict[str, dict[int, dict]]]


def seed_summaries(results: Iterable[tuple[RunConfig, dict]]) -> Summaries:
    """``out[(method, sparsity)][side][seed] = summary``, as :func:`seed_cells` files them."""
    out: Summaries = defaultdict(lambda: defaultdict(dict))
    for cfg, summary in results:
        out[row_key(cfg)][side(cfg)][cfg.train.seed] = summary
    return out


#: The column names of the sides, as the notes under a table name them.
SIDE_NAMES = {"sp": "SP", "sp_matched": "SP at IP's parameter count", "ip": "IP"}


def _seed_runs(
    summaries: Summaries, key: tuple[str, float], seed: int, sides: Sequence[str]
) -> dict[str, dict]:
    reps = summaries.get(key, {})
    return {s: reps[s][seed] for s in sides if seed in reps.get(s, {})}


def mixed_seeds(
    summaries: Summaries,
    key: tuple[str, float],
    seeds: Iterable[int],
    sides: Sequence[str] = ("sp", "ip"),
) -> dict[int, tuple[str, ...]]:
    """Of ``seeds``, those whose runs in row ``key`` (on ``sides``, those present) trained
    on more than one kind of machine, with the kinds (see :func:`.machines.mixed_kinds`)."""
    out = {}
    for seed in seeds:
        runs = _seed_runs(summaries, key, seed, sides)
        if len(runs) > 1 and (kinds := mixed_kinds(*runs.values())):
            out[seed] = kinds
    return out


def mixed_notes(
    summaries: Summaries,
    mixed: dict[tuple[str, float], dict[int, tuple]],
    sides: Sequence[str] = ("sp", "ip"),
) -> list[str]:
    """One line per row with mixed seeds: which seeds, and which machine trained each side."""
    lines = []
    for key, seeds in mixed.items():
        where: dict[str, list[int]] = defaultdict(list)
        for seed in seeds:
            runs = _seed_runs(summaries, key, seed, sides)
            text = ", ".join(
                f"{SIDE_NAMES[s]} on {md(machine_label(r), 120)}" for s, r in runs.items()
            )
            where[text].append(seed)
        parts = [
            f"seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))}: {text}"
            for text, ss in where.items()
        ]
        if parts:
            lines.append(f"- {MIXED} {key[0]} {key[1]:.0%}: " + "; ".join(parts))
    if not lines:
        return []
    return [
        "",
        f"{MIXED} Compared runs that trained on different kinds of machine: their difference "
        "includes whatever the machines compute differently (other kernels, other rounding), "
        "not the representation alone; read these rows with care.",
        "",
        *lines,
    ]


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


def _result(
    test: Paired | None, p_holm: float | None, failed: list[str], mixed: int = 0
) -> list[str]:
    if failed:  # a NaN mean is no "tie": say which side diverged
        return ["-", "-", "-", f"none: {' and '.join(failed)} diverged"]
    if test is None:
        return ["-", "-", "-", "-"]
    mark = f" {MIXED} mixed machines in {mixed} of {test.n} seeds" if mixed else ""
    return [fmt_ci(test), fmt_p(test.p), fmt_p(p_holm), verdict(test, p_holm) + mark]


def _machines_sentence(mixed: int, unknown: int, pairs: int) -> str:
    """How many of a table's pairs trained on two kinds of machine, or had one unrecorded."""
    text = (
        f"{MIXED} {mixed} of these {pairs} pairs trained on two kinds of machine"
        if mixed
        else f"none of the {pairs} pairs trained on two kinds of machine"
    )
    if unknown:
        text += f" ({unknown} have a side whose machine is unrecorded)"
    return text + "."


def _spread_sentence(
    tests: dict[tuple[str, float], tuple[Paired | None, float | None]],
) -> str | None:
    """The per-seed standard deviation of IP − SP over the table's rows, and where each
    Holm-significant row's falls: a t-test on 3 seeds wins as easily by a small spread as
    by a large mean."""
    spread = {
        k: statistics.stdev(t.diffs) for k, (t, _) in tests.items() if t is not None and t.n > 1
    }
    if len(spread) < 2:
        return None
    order = sorted(spread, key=spread.__getitem__)

    def name(k: tuple[str, float]) -> str:
        return f"{k[0]} {k[1]:.0%}"

    text = (
        f"Per-seed standard deviation of IP − SP: median {statistics.median(spread.values()):.2f}"
        f" points over the {len(spread)} rows, from {spread[order[0]]:.2f} ({name(order[0])}) "
        f"to {spread[order[-1]]:.2f} ({name(order[-1])})."
    )
    wins = [
        k
        for k in order
        if (t := tests[k][0]) is not None and verdict(t, tests[k][1]) in ("IP", "SP")
    ]
    if wins:
        text += " " + "; ".join(
            f"{name(k)}, a Holm-significant row, has the {_ordinal(order.index(k))}smallest "
            f"({spread[k]:.2f})"
            for k in wins
        )
        text += (
            ": with few seeds a t-test finds a small steady difference as readily as a large "
            "one, so such a win says that the difference is consistent, not that it is large."
        )
    return text


def _ordinal(i: int) -> str:
    """``""`` for index 0, else ``"2nd "``, ``"3rd "``, ... (the (i+1)-th)."""
    n = i + 1
    if n == 1:
        return ""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix} "


def _row_count(n: int) -> str:
    return f"{n} row" + ("" if n == 1 else "s")


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
    precision = one_precision(results)
    cells = seed_cells(results, metric)
    summaries = seed_summaries(results)
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
    reference = bool(dense) and len(dense) >= min_seeds
    left_out = _row_count(partial)
    if partial and not shown and not reference:  # nothing complete yet: no empty table
        return (
            f"No row has {min_seeds} seeds on each side yet: {left_out} left out "
            "until their runs finish."
        )
    tests = _stats_rows(cells, shown, "sp")
    pairs: list[float] = []
    means: list[float] = []  # one per cell: the cell-level test
    mixed: dict[tuple[str, float], dict[int, tuple]] = {}
    unknown = n_mixed = 0  # over the pooled pairs
    for key in shown:
        reps = cells[key]
        sp, ip = list(reps.get("sp", {}).values()), list(reps.get("ip", {}).values())
        failed = [rep.upper() for rep, v in (("sp", sp), ("ip", ip)) if len(finite(v)) < len(v)]
        test, p_holm = tests[key]
        seeds_paired = paired_seeds(reps.get("sp", {}), reps.get("ip", {}))
        mixed[key] = mixed_seeds(summaries, key, seeds_paired)
        if test is not None and not failed:
            pairs += test.diffs
            means.append(test.mean)
            n_mixed += len(mixed[key])
            unknown += sum(
                unrecorded(*_seed_runs(summaries, key, s, ("sp", "ip")).values())
                for s in seeds_paired
            )
        cols = [
            key[0],
            f"{key[1]:.0%}",
            fmt_pct(sp) if sp else "-",
            fmt_pct(ip) if ip else "-",
            *_result(test, p_holm, failed, len(mixed[key])),
            _costs_cell(costs, key, ("sp", "ip"), "trainable"),
            _costs_cell(costs, key, ("sp", "ip"), "flops"),
        ]
        lines.append("| " + " | ".join(cols) + " |")
    if reference:
        lines.append(f"| dense | 0% | {fmt_pct(dense)} (reference) | | | | | | | |")
    lines.append("")
    if partial:
        lines.append(f"Left out: {left_out} with fewer than {min_seeds} seeds on a side.")
        lines.append("")
    tested = sum(t is not None and t.p is not None for t, _ in tests.values())
    lines.append(
        f"{metric} in % over seeds {sorted(seeds)}"
        + (f", trained in {precision}" if precision else "")
        + ": mean ± standard deviation. IP − SP: the "
        "mean of the per-seed differences (same initial weights and data order) in points, "
        "with its 95% confidence interval; p: two-sided paired t-test; "
        + (
            f"p (Holm): corrected for the {_row_count(tested)} tested; "
            f"a side is named only when p (Holm) < {ALPHA}. "
            if tested
            else "no row could be tested (that needs two seeds on both sides whose differences "
            "are not all equal), so no side is named. "
        )
        + "Trainable: nonzero weights or coefficients plus filter-basis entries; MFLOPs: "
        "sparse, per sample."
    )
    lines += mixed_notes(summaries, mixed)
    if pairs:
        lines += [
            "",
            f"All pairs of the table: {pooled(pairs)}; "
            + _machines_sentence(n_mixed, unknown, len(pairs)),
            "",
            f"With the cells as the units: {by_cell(means)}. The pairs are not independent: "
            "all cells share the seeds (each seed's initial weights and data order), and the "
            "cells that fine-tune a trained model share those models, so the tests over all "
            "pairs count one seed's luck several times. This test counts each cell once (the "
            "cells still share seeds, so it is not exact either).",
        ]
    if spread := _spread_sentence(tests):
        lines += ["", spread]
    matched = matched_table(results, metric, min_seeds)
    if matched:
        lines += ["", matched]
    return "\n".join(lines)


def matched_table(
    results: Iterable[tuple[RunConfig, dict]], metric: str = "test_acc", min_seeds: int = 1
) -> str:
    """The parameter-matched control: per row that has it, SP at IP's trainable-parameter
    count (``--param-matched``) beside SP and IP, IP − that control with its test (Holm
    across these rows), and the share of IP − SP that the control closes with its Fieller
    95% interval (:func:`gap_explained`). Pairs of control and IP that trained on different
    kinds of machine are marked. Empty if no run of the control exists."""
    results = list(results)
    one_precision(results)
    cells = seed_cells(results, metric)
    summaries = seed_summaries(results)
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
        "| p (Holm) | result | share of IP − SP it closes [95% CI] | trainable SP / it / IP "
        "| MFLOPs SP / it / IP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    mixed: dict[tuple[str, float], dict[int, tuple]] = {}
    for key in keys:
        reps = cells[key]
        sp = list(reps.get("sp", {}).values())
        ctl, ip = list(reps["sp_matched"].values()), list(reps.get("ip", {}).values())
        failed = [n for n, v in (("SP", ctl), ("IP", ip)) if len(finite(v)) < len(v)]
        at = f" at {statistics.fmean(achieved[key]):.2%}" if achieved[key] else ""
        seeds = paired_seeds(reps["sp_matched"], reps.get("ip", {}))
        mixed[key] = mixed_seeds(summaries, key, seeds, ("sp", "sp_matched", "ip"))
        cols = [
            key[0],
            f"{key[1]:.0%}",
            fmt_pct(sp) if sp else "-",
            (fmt_pct(ctl) if ctl else "-") + at,
            fmt_pct(ip) if ip else "-",
            *_result(*tests[key], failed, len(mixed[key])),
            gap_explained(reps),
            _costs_cell(costs, key, ("sp", "sp_matched", "ip"), "trainable"),
            _costs_cell(costs, key, ("sp", "sp_matched", "ip"), "flops"),
        ]
        lines.append("| " + " | ".join(cols) + " |")
    lines += [
        "",
        "The parameter-matched control (`--param-matched`): SP pruned to the sparsity at which "
        "it keeps as many weights as IP trains (IP's nonzero coefficients plus its filter-basis "
        "entries), from the same initial weights and data order; IP − it is paired by seed, "
        "p (Holm) corrected for these rows. Share of IP − SP it closes: (it − SP) / (IP − SP), "
        "the means over the seeds with all three runs, with Fieller's 95% interval for a ratio "
        "of paired means (unbounded where IP − SP itself is not distinguishable from 0).",
        *mixed_notes(summaries, mixed, ("sp", "sp_matched", "ip")),
    ]
    return "\n".join(lines)


def gap_explained(reps: dict[str, dict[int, float]]) -> str:
    """``49% [-4%, 86%]``: the share of the mean IP − SP that the parameter-matched control
    closes, (control − SP) / (IP − SP) over the seeds with all three runs finite, with its
    Fieller 95% interval (:func:`..experiments.stats.ratio`); ``-`` without such seeds or
    with a zero mean IP − SP."""
    sp, ctl, ip = reps.get("sp", {}), reps.get("sp_matched", {}), reps.get("ip", {})
    seeds = [
        s for s in sorted(set(sp) & set(ctl) & set(ip)) if len(finite([sp[s], ctl[s], ip[s]])) == 3
    ]
    den = [ip[s] - sp[s] for s in seeds]
    if not seeds or math.fsum(den) == 0:
        return "-"
    share = ratio([ctl[s] - sp[s] for s in seeds], den)
    if share.low is None or share.high is None:
        return f"{share.estimate:.0%} [unbounded]" if len(seeds) > 1 else f"{share.estimate:.0%}"
    return f"{share.estimate:.0%} [{share.low:.0%}, {share.high:.0%}]"


def length_curve(
    results: Iterable[tuple[RunConfig, dict]], min_seeds: int = 2, metric: str = "test_acc"
) -> dict[tuple[str, float], list[tuple[int, Paired]]]:
    """Per (method, sparsity) trained at several lengths: ``[(epochs, IP − SP test)]`` in
    points, for each length with at least ``max(min_seeds, 2)`` pairs. The runs must share
    one precision (a one-line ``ValueError`` otherwise)."""
    results = list(results)
    one_precision(results)
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
    missing; marked :data:`.machines.MIXED` where the two runs trained on different kinds of
    machine)."""
    results = list(results)
    one_precision(results)
    cells = seed_cells(results, metric)
    summaries = seed_summaries(results)
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
        mixed = mixed_seeds(summaries, (method, sparsity), seeds)
        for seed in seeds:
            a, b = sp.get(seed), ip.get(seed)
            diff = f" ({(b - a) * 100:+.2f})" if len(finite([a, b])) == 2 else ""
            row.append(f"{pct(a)} → {pct(b)}{diff}" + (f" {MIXED}" if seed in mixed else ""))
        lines.append(f"| {method} | {sparsity:.0%} | " + " | ".join(row) + " |")
    return "\n".join(lines)
