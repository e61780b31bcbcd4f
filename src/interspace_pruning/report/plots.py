"""Matplotlib figures of a sweep (written as PNG files, headless)."""

from __future__ import annotations

import io
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..bases import FilterBasis, filter_bases  # noqa: E402
from ..experiments.runfiles import model_file  # noqa: E402
from ..foundations.checkpoint import load_tensors  # noqa: E402
from ..foundations.io import CorruptFileError, atomic_write_bytes  # noqa: E402
from ..tracking.figures import show_filters  # noqa: E402
from .collect import RunRecord, try_load_model  # noqa: E402
from .tables import paired_differences, row_key, seed_cells, side  # noqa: E402

COLORS = {"sp": "tab:blue", "ip": "tab:red", "dense": "black"}
LABELS = {"sp": "SP (spatial)", "ip": "IP (interspace)", "dense": "dense"}


def series(records: Sequence[RunRecord], key: str) -> dict[str, dict[str, dict[float, list]]]:
    """``out[method][rep][sparsity] = [values over seeds]`` for summary field ``key``."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        method, sparsity = row_key(r.config)
        if method != "dense" and key in r.summary:
            out[method][side(r.config)][sparsity].append(r.summary[key])
    return out


def dense_values(records: Sequence[RunRecord], key: str) -> list[float]:
    return [
        r.summary[key]
        for r in records
        if r.config.prune.representation.is_dense and key in r.summary
    ]


def _axes(n: int, width: float = 4.0, height: float = 3.2):
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _save(fig, path: Path) -> Path:
    """Render ``fig`` as a PNG at ``path``, atomically: a symlink planted at ``path`` is
    replaced, never written through, and a reader never sees half a picture."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_metric_vs_sparsity(
    records: Sequence[RunRecord], key: str, ylabel: str, path: Path, scale: float = 1.0
) -> Path | None:
    """One panel per method: IP and SP mean +- std over seeds vs sparsity; dense as a line."""
    data = series(records, key)
    if not data:
        return None
    fig, axes = _axes(len(data))
    dense = dense_values(records, key)
    for ax, (method, reps) in zip(axes, sorted(data.items()), strict=False):
        for rep in ("sp", "ip"):
            if rep not in reps:
                continue
            xs = sorted(reps[rep])
            means = [statistics.fmean(reps[rep][x]) * scale for x in xs]
            stds = [
                (statistics.stdev(reps[rep][x]) if len(reps[rep][x]) > 1 else 0.0) * scale
                for x in xs
            ]
            ax.errorbar(
                [x * 100 for x in xs],
                means,
                yerr=stds,
                marker="o",
                capsize=3,
                color=COLORS[rep],
                label=LABELS[rep],
            )
        if dense:
            ax.axhline(statistics.fmean(dense) * scale, color="black", ls="--", label="dense")
        ax.set_title(method)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_paired_differences(records: Sequence[RunRecord], path: Path) -> Path | None:
    """IP - SP test accuracy per seed (dots) and its mean +- std (bar), one row per cell.

    SP and IP of a seed share initial weights and data order, so each dot is one paired
    comparison; a row whose dots all lie right of 0 is a cell IP wins in every seed.
    """
    diffs = paired_differences(seed_cells([(r.config, r.summary) for r in records]))
    if not diffs:
        return None
    rows = sorted(diffs, key=lambda k: (k[0] != "dense", k[0], -k[1]))
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(rows)))
    for y, key in enumerate(rows):
        points = [d * 100 for d in diffs[key]]
        mean = statistics.fmean(points)
        std = statistics.stdev(points) if len(points) > 1 else 0.0
        color = COLORS["ip"] if min(points) > 0 else COLORS["sp"] if max(points) < 0 else "gray"
        ax.errorbar(mean, y, xerr=std, fmt="|", color=color, capsize=3, markersize=12)
        ax.scatter(points, [y] * len(points), s=14, color=color, alpha=0.7, zorder=3)
    ax.axvline(0, color="black", lw=0.8)
    labels = [
        "dense-IP − dense" if m == "dense" else f"{m} {sp:.0%} (n={len(diffs[(m, sp)])})"
        for m, sp in rows
    ]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("IP − SP test accuracy (points), per seed")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_length_curve(curve: dict, path: Path) -> Path | None:
    """IP − SP (mean and 95% CI, points) against the number of training epochs, one line
    per (method, sparsity): does the gap shrink, stay or grow with longer training?"""
    if not curve:
        return None
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for (method, sparsity), points in sorted(curve.items()):
        xs = [e for e, _ in points]
        means = [t.mean for _, t in points]
        low = [t.mean - t.low if t.low is not None else 0.0 for _, t in points]
        high = [t.high - t.mean if t.high is not None else 0.0 for _, t in points]
        ax.errorbar(
            xs, means, yerr=[low, high], marker="o", capsize=3, label=f"{method} {sparsity:.0%}"
        )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    lengths = sorted({e for points in curve.values() for e, _ in points})
    ax.set_xticks(lengths, [str(e) for e in lengths])
    ax.minorticks_off()
    ax.set_xlabel("training epochs")
    ax.set_ylabel("IP − SP test accuracy (points)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_training_curves(records: Sequence[RunRecord], path: Path) -> Path | None:
    """Train loss per epoch at each method's highest sparsity (mean over seeds), IP vs SP."""
    by_method: dict = defaultdict(list)
    for r in records:
        if not r.config.prune.representation.is_dense and r.history:
            by_method[r.config.prune.method].append(r)
    if not by_method:
        return None
    fig, axes = _axes(len(by_method))
    dense = [r for r in records if r.config.prune.representation.is_dense and r.history]
    for ax, (method, recs) in zip(axes, sorted(by_method.items()), strict=False):
        top = max(r.config.prune.sparsity for r in recs)
        groups = {"sp": [], "ip": []}
        for r in recs:
            if r.config.prune.sparsity == top:
                groups[r.config.prune.representation.kind].append(r)
        groups["dense"] = dense
        for rep, rs in groups.items():
            if not rs:
                continue
            n = min(len(r.history) for r in rs)
            loss = [statistics.fmean(r.history[e]["train_loss"] for r in rs) for e in range(n)]
            ax.plot(
                range(1, n + 1),
                loss,
                color=COLORS[rep],
                label=LABELS[rep],
                ls="--" if rep == "dense" else "-",
            )
        ax.set_title(f"{method} at {top:.0%}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_filter_density(records: Sequence[RunRecord], path: Path) -> Path | None:
    """Histogram of nonzero spatial entries per 3x3 filter, IP vs SP, at the highest sparsity."""
    recs = [
        r
        for r in records
        if "filter_nnz_hist" in r.summary and not r.config.prune.representation.is_dense
    ]
    if not recs:
        return None
    top = max(r.config.prune.sparsity for r in recs)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.4
    for i, rep in enumerate(("sp", "ip")):
        hists = [
            r.summary["filter_nnz_hist"]
            for r in recs
            if r.config.prune.representation.kind == rep and r.config.prune.sparsity == top
        ]
        if not hists:
            continue
        total = torch.tensor(hists, dtype=torch.float64).sum(0)
        frac = (total / total.sum()).tolist()
        ax.bar(
            [k + (i - 0.5) * width for k in range(10)],
            frac,
            width,
            color=COLORS[rep],
            label=LABELS[rep],
        )
    ax.set_xticks(range(10))
    ax.set_xlabel("nonzero spatial entries per 3x3 filter")
    ax.set_ylabel("fraction of filters")
    ax.set_title(f"spatial filter density at {top:.0%} sparsity (all methods, seeds)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def initial_basis(rec: RunRecord, idx: int, fb: FilterBasis) -> torch.Tensor:
    """Basis ``idx`` as run ``rec`` initialised it (its ``bases_init.pt``), shaped like
    ``fb``'s filters; a one-line :class:`CorruptFileError` for a file of another run (its
    ``config_hash``), without that basis, or of another size."""
    path = rec.path / "bases_init.pt"
    init = load_tensors(path, "initial bases")
    theirs = init.get("config_hash")  # files written before it was recorded have none
    if theirs is not None and theirs != rec.config_hash:
        raise CorruptFileError(path, f"holds the bases of another run ({str(theirs)[:20]!r})")
    start = init.get(f"basis{idx}")
    want = fb.num_filters * math.prod(fb.kernel_size)
    if not isinstance(start, torch.Tensor) or start.numel() != want:
        raise CorruptFileError(path, f"has no basis{idx} of {want} values, as the model's")
    return start.reshape(-1, *fb.kernel_size)


def plot_bases(
    records: Sequence[RunRecord], path: Path, problems: list[str] | None = None
) -> Path | None:
    """A learned filter basis next to its initialisation (one IP run, a middle layer).

    Runs whose files cannot be used are named in ``problems`` and the next run is tried."""
    cands = [
        r
        for r in records
        if r.config.prune.representation.is_interspace
        and (r.path / "bases_init.pt").is_file()
        and model_file(r.path) is not None
    ]
    for rec in sorted(cands, key=lambda r: (-r.config.prune.sparsity, r.config.train.seed)):
        model = try_load_model(rec, problems)
        if model is None:
            continue
        bases = filter_bases(model)
        idx = len(bases) // 2
        fb = bases[idx]
        try:
            start = initial_basis(rec, idx, fb)
            break
        except ValueError as e:
            if problems is not None:
                problems.append(f"no pictures from {rec.path.name}: {e}")
    else:
        return None
    learned = fb.filters()
    n = fb.num_filters
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.6), squeeze=False)
    show_filters(axes[0], start, f"initial basis ({rec.config.prune.representation.basis})")
    show_filters(
        axes[1],
        learned,
        f"learned basis ({rec.config.prune.method}, {rec.config.prune.sparsity:.0%})",
    )
    return _save(fig, path)


def plot_sparse_filters(
    records: Sequence[RunRecord], path: Path, count: int = 8, problems: list[str] | None = None
) -> Path | None:
    """The paper's Figure 1: sparse filters of one layer in SP (fixed support) and IP (any
    shape), for the same method, sparsity and seed (the next pair if a model cannot be
    loaded; the reason goes to ``problems``)."""
    pairs = {}
    for r in records:
        p = r.config.prune
        rep = p.representation
        if not rep.is_dense and model_file(r.path) is not None:  # model.pt, or model.isp
            pairs.setdefault((p.method, p.sparsity, r.config.train.seed), {})[rep.kind] = r
    full = [(k, v) for k, v in pairs.items() if len(v) == 2]
    for key, pair in sorted(full, key=lambda kv: (-kv[0][1], kv[0][2])):  # noqa: B007 (used below)
        loaded = {rep: try_load_model(pair[rep], problems) for rep in ("sp", "ip")}
        if all(m is not None for m in loaded.values()):
            break
    else:
        return None
    rows = []
    for rep in ("sp", "ip"):
        model = loaded[rep]
        convs = [
            m
            for m in model.modules()
            if isinstance(m, torch.nn.Conv2d) and tuple(m.kernel_size) == (3, 3)
        ]
        w = convs[len(convs) // 2].weight.detach().reshape(-1, 3, 3)
        alive = w[(w != 0).flatten(1).any(1)]
        rows.append((rep, alive[:count]))
    fig, axes = plt.subplots(2, count, figsize=(1.4 * count, 3.6), squeeze=False)
    for ax_row, (rep, filters) in zip(axes, rows, strict=True):
        show_filters(ax_row, filters, f"{LABELS[rep]}: {key[0]} at {key[1]:.0%}, unpruned filters")
    return _save(fig, path)
