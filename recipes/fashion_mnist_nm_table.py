"""The table of docs/results/nm_sparsity.md from the runs of recipes/fashion_mnist_nm.yaml.

    interspace sweep recipes/fashion_mnist_nm.yaml
    python recipes/fashion_mnist_nm_table.py runs/fmnist-nm

Test accuracy in %, mean ± std over the seeds found, unstructured vs N:M at the same
sparsity, per criterion and representation; the cost is N:M − unstructured.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from interspace_pruning.report.collect import collect_runs


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * sd:.2f} (n={len(values)})"


def main(root: str) -> None:
    done, unfinished = collect_runs(root)
    acc: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in done:
        p = r.config.prune
        if p.representation.is_dense:
            key = ("dense", "dense", 0.0, None)
        else:
            key = (p.method, p.representation.kind, p.sparsity, p.pattern)
        acc[key][r.config.train.seed] = r.summary["test_acc"]
    patterns = sorted({k[3] for k in acc if k[3] is not None})
    print("| criterion | repr | sparsity | unstructured | " + " | ".join(patterns) + " | cost |")
    print("|---|---|---|---|" + "---|" * len(patterns) + "---|")
    for method, rep, sparsity, _ in sorted(k for k in acc if k[3] is None):
        base = acc[(method, rep, sparsity, None)]
        cells, costs = [], []
        for pat in patterns:
            other = acc.get((method, rep, sparsity, pat), {})
            cells.append(fmt(list(other.values())))
            seeds = sorted(set(base) & set(other))
            costs.append([other[s] - base[s] for s in seeds])
        cost = "; ".join(
            f"{100 * statistics.mean(c):+.2f} (seeds {len(c)})" if c else "-" for c in costs
        )
        row = [method, rep, f"{sparsity:.0%}", fmt(list(base.values())), *cells, cost]
        print("| " + " | ".join(row) + " |")
    if unfinished:
        print(f"\n{len(unfinished)} unfinished runs: {[p.name for p in unfinished]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/fmnist-nm")
