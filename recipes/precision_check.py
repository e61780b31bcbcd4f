"""Does a lower precision move accuracy? The paired table of a precision check.

    python recipes/precision_check.py docs/results/cifar10_bf16_check/runs
    python recipes/precision_check.py RUNS --low bf16 --high fp32 --out RUNS/../precision.md

Runs whose configurations differ only in ``train.precision`` (a group of the campaign: same
seed, initial weights and data order) are paired. Each cell (representation, method,
sparsity, epochs) gets the mean difference low − high over seeds, its 95% confidence interval
and paired t-test, and a Holm correction over the cells; a side is named only when the Holm
p is below 0.05. Where each run trained (machine kind) is listed: a pair across kinds is
marked.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from interspace_pruning.campaign.queue import group_key
from interspace_pruning.experiments.runfiles import read_config, read_summary
from interspace_pruning.experiments.stats import fmt_ci, fmt_p, holm, paired, verdict
from interspace_pruning.experiments.stretches import machine_kinds
from interspace_pruning.foundations.io import atomic_write_bytes


def table(runs: Path, low: str, high: str) -> str:
    pairs: dict[str, dict[str, tuple[dict, object]]] = defaultdict(dict)
    for summary_file in sorted(runs.glob("*/summary.json")):
        cfg = read_config(summary_file.with_name("config.json"))
        pairs[group_key(cfg)][cfg.train.precision] = (read_summary(summary_file), cfg)
    cells: dict[tuple, list[tuple[float, float, bool, int]]] = defaultdict(list)
    where: set[str] = set()
    for sides in pairs.values():
        if low not in sides or high not in sides:
            continue
        (s_low, cfg), (s_high, _) = sides[low], sides[high]
        kinds = set(machine_kinds(s_low)) | set(machine_kinds(s_high))
        where |= kinds
        p = cfg.prune
        rep = p.representation.kind
        cell = (rep, "-" if rep == "dense" else f"{p.method} {p.sparsity:g}", cfg.train.epochs)
        cells[cell].append(
            (100 * s_low["test_acc"], 100 * s_high["test_acc"], len(kinds) > 1, cfg.train.seed)
        )
    if not cells:
        raise SystemExit(f"no {low}/{high} pairs with summaries in {runs}")
    keys = sorted(cells)
    stats = [paired([a for a, *_ in cells[k]], [b for _, b, *_ in cells[k]]) for k in keys]
    adjusted = holm([s.p for s in stats])
    lines = [
        f"| representation | method | epochs | seeds | {high} test acc | {low} test acc "
        f"| {low} − {high} [95% CI] | p | p (Holm) | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s, ph in zip(keys, stats, adjusted, strict=True):
        rows = cells[key]
        mixed = " ⚠ pair across machines" if any(m for *_, m, _ in rows) else ""
        mean_hi = sum(b for _, b, *_ in rows) / len(rows)
        mean_lo = sum(a for a, *_ in rows) / len(rows)
        result = verdict(s, ph).replace("IP", low).replace("SP", high)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {len(rows)} | {mean_hi:.2f} | {mean_lo:.2f} "
            f"| {fmt_ci(s)} | {fmt_p(s.p)} | {fmt_p(ph)} | {result}{mixed} |"
        )
    per_seed = [
        f"- {k[0]} {k[1]}: "
        + ", ".join(
            f"seed {seed} {a - b:+.2f}" for a, b, _, seed in sorted(cells[k], key=lambda r: r[3])
        )
        for k in keys
    ]
    return "\n".join(
        lines
        + [
            "",
            f"Per seed ({low} − {high}, points):",
            *per_seed,
            "",
            "Trained on: " + ", ".join(sorted(where)),
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", type=Path)
    p.add_argument("--low", default="bf16")
    p.add_argument("--high", default="fp32")
    p.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = p.parse_args()
    text = table(args.runs, args.low, args.high)
    print(text)
    if args.out:
        command = f"python recipes/precision_check.py {args.runs}"
        head = f"# {args.low} against {args.high}\n\n`{command}`\n\n"
        atomic_write_bytes(args.out, (head + text + "\n").encode())


if __name__ == "__main__":
    main()
