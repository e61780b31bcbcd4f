"""``interspace report``: Markdown tables and PNG plots for a run or a sweep directory."""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from ..experiments.stats import fmt_ci, fmt_p
from ..experiments.stretches import run_seconds, summary_stretches
from ..foundations.io import atomic_write_text, inside
from ..foundations.names import safe_file_stem
from ..models import Trust
from .collect import RunRecord, collect_runs
from .machines import machine_label, run_precision
from .markdown import md, md_code
from .pareto import pareto_section
from .tables import (
    ip_vs_sp_table,
    is_complete,
    length_curve,
    mean_std,
    per_seed_table,
    row_key,
    seed_cells,
    side,
)
from .variants import drop_duplicates, split_variants

DIAGNOSTIC_COLUMNS = [
    ("grad_norm_init", "‖∇θ L‖ at init", 1.0, "{:.3g}"),
    ("spatial_grad_norm_init", "‖∇W L‖ at init", 1.0, "{:.3g}"),
    ("gap_acc", "train − test acc (pts)", 100.0, "{:.2f}"),
    ("gap_loss", "test − train loss", 1.0, "{:.3f}"),
    ("dense_filter_fraction", "dense 3x3 filters", 100.0, "{:.1f}%"),
]


def _cell(values: list[float], scale: float, fmt: str) -> str:
    if not values:
        return "-"
    m, s = mean_std([v * scale for v in values])
    return fmt.format(m) + (f" ± {fmt.format(s).rstrip('%')}" if len(values) > 1 else "")


def diagnostics_table(records: list[RunRecord]) -> str | None:
    """Per table row (see :func:`row_key`): SP | IP for each diagnostic the runs recorded."""
    present = [c for c in DIAGNOSTIC_COLUMNS if any(c[0] in r.summary for r in records)]
    if not present:
        return None
    cells: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        for key, *_ in present:
            if key in r.summary:
                cells[row_key(r.config)][key][side(r.config)].append(r.summary[key])
    head = "| method | sparsity | " + " | ".join(f"{c[1]} SP | IP" for c in present) + " |"
    sep = "|---|---|" + "---|---|" * len(present)
    lines = [head, sep]
    for (method, sparsity), per in sorted(cells.items()):
        row = [method, f"{sparsity:.0%}"]
        for key, _, scale, fmt in present:
            row += [_cell(per[key]["sp"], scale, fmt), _cell(per[key]["ip"], scale, fmt)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def mismatched_starts(records: list[RunRecord]) -> list[str]:
    """Pairs (same row and seed) whose runs were fine-tuned from different trained weights
    (``init_from_sha256``), e.g. because one side started from a re-trained ``model.pt``."""
    starts: dict = defaultdict(set)
    for r in records:
        digest = r.summary.get("init_from_sha256")
        if digest:
            starts[(row_key(r.config), r.config.train.seed)].add(digest)
    return [
        f"- not exactly paired: {method} {sparsity:.0%} seed {seed}: SP and IP were fine-tuned "
        "from different trained weights"
        for ((method, sparsity), seed), digests in sorted(starts.items())
        if len(digests) > 1
    ]


def mixed_data(records: list[RunRecord]) -> list[str]:
    """A loud line when the runs of one table read different data (their summaries'
    ``data_sha256``: another copy of the dataset, another subset or file order); runs from
    before the fingerprint was recorded are counted apart."""
    seen: dict[str, int] = defaultdict(int)
    for r in records:
        digest = r.summary.get("data_sha256")
        seen[digest[:12] if isinstance(digest, str) else "unrecorded"] += 1
    known = {k: n for k, n in seen.items() if k != "unrecorded"}
    if len(known) < 2:
        return []
    parts = ", ".join(f"{n} runs read data {k}…" for k, n in sorted(known.items()))
    return [f"- ⚠ these runs did not all read the same data ({parts}): compare with care"]


def _label(r: RunRecord) -> str:
    p = r.config.prune
    return f"{p.representation.kind} {p.method} {p.sparsity:g} seed {r.config.train.seed}"


def where_trained(records: list[RunRecord]) -> str:
    """Which kinds of machine trained the runs, with the mean wall time per run on each
    (summed over a run's stretches, :func:`..experiments.stretches.run_seconds`; see
    :func:`.machines.machine_label`: each summary's stretches, else its ``hardware``, the
    GPU's name, else the CPU's), then the CPU generations recorded (:func:`cpu_generations`)."""
    groups: dict[str, list[float]] = {}
    for r in records:
        name = machine_label(r.summary)
        groups.setdefault(name, []).append(run_seconds(r.summary))
    parts = [
        f"{len(times)} on {md(name, 120)} (mean wall time per run {statistics.fmean(times):.0f} s)"
        for name, times in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]
    return "Trained: " + "; ".join(parts) + "." + cpu_generations(records)


def cpu_generations(records: list[RunRecord]) -> str:
    """The CPU generations the runs' stretches record (``cpu_id``: one machine kind can span
    several, e.g. a Zen 4 and a Zen 5 EPYC), with how many runs trained some epochs on
    each; ``""`` where none records one (stretches before 2026-12-07 do not)."""
    runs: dict[str, int] = {}
    for r in records:
        trained = [s for s in summary_stretches(r.summary) if _trained_epochs(s)]
        for gen in {str(s["cpu_id"]) for s in trained if s.get("cpu_id")}:
            runs[gen] = runs.get(gen, 0) + 1
    if not runs:
        return ""
    listed = "; ".join(
        f"{md(g, 80)}: {n}" for g, n in sorted(runs.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return f" CPU generations that trained epochs of them (runs on each): {listed}."


def _trained_epochs(stretch) -> bool:
    """Whether a stretch trained an epoch (an open one, still training or killed, counts)."""
    start, end = stretch.get("from_epoch"), stretch.get("to_epoch")
    return not (isinstance(start, int) and isinstance(end, int) and end <= start)


def complete_runs(records: list[RunRecord], min_seeds: int) -> list[RunRecord]:
    """The runs of the rows (see :func:`row_key`) with at least ``min_seeds`` runs on each
    side, SP and IP; all of them when ``min_seeds`` is 1."""
    cells = seed_cells((r.config, r.summary) for r in records)
    keep = {k for k, reps in cells.items() if is_complete(reps, min_seeds)}
    return [r for r in records if row_key(r.config) in keep]


def length_section(
    records: list[RunRecord],
    dataset: str,
    model: str,
    min_seeds: int,
    out: Path,
    precision: str | None = None,
    variant: str = "",
) -> list[str]:
    """IP − SP against the number of training epochs, for the cells trained at several
    lengths: a table (mean, 95% CI, paired t-test per length) and one plot. Runs of one
    ``precision`` only (None: every run must have the same one); ``variant`` names the
    setting of these runs where the folder holds several (:func:`.variants.split_variants`)."""
    recs = [
        r
        for r in records
        if (r.config.data.dataset, r.config.model.model) == (dataset, model)
        and not r.diverged
        and (precision is None or run_precision(r.config, r.summary) == precision)
    ]
    name = f"{dataset} / {model}" + (f", {precision}" if precision else "")
    name = md(name) + (f" ({md(variant)})" if variant else "")
    slug = _slug(dataset, model, precision or "", variant)
    curve = length_curve([(r.config, r.summary) for r in recs], min_seeds)
    if not curve:
        return []
    lines = [
        "",
        f"## {name}: IP − SP against training length",
        "",
        "| method | sparsity | epochs | IP − SP [95% CI] | p | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for (method, sparsity), points in sorted(curve.items()):
        for epochs, test in points:
            lines.append(
                f"| {method} | {sparsity:.0%} | {epochs} | {fmt_ci(test)} | {fmt_p(test.p)} "
                f"| {test.n} |"
            )
    from . import plots  # matplotlib (1 s to import): only when a report draws

    picture = plots.plot_length_curve(curve, out / f"{slug}_length.png")
    if picture is not None:
        lines += ["", f"![IP − SP against training length]({picture.name})"]
    return lines


def _slug(*parts: str) -> str:
    """A file name stem for a section's figures: only letters, digits, ``.``, ``_`` and
    ``-`` (a model's ``module:function`` or a setting's ``=`` would be a URL scheme or an
    invalid name on some systems), with a short hash where characters were replaced."""
    return safe_file_stem("_".join(p for p in parts if p))


def _names_precision(precisions: set[str]) -> bool:
    """Whether section titles name the precision: when runs of one dataset and model
    trained in several, or in one other than fp32."""
    return len(precisions) > 1 or precisions != {"fp32"}


def _differing(variants: list[tuple[str, list[RunRecord]]]) -> list[str]:
    """The field names in the labels of :func:`.variants.split_variants`."""
    first = variants[0][0]
    return [part.split(" = ")[0] for part in first.split(", ") if " = " in part]


def _group_section(
    all_recs: list[RunRecord],
    dataset: str,
    model: str,
    precision: str,
    epochs: int | None,
    variant: str,
    min_seeds: int,
    out: Path,
    unusable: list[str],
) -> list[str]:
    """One section of the report: the runs of one dataset, model, precision, length and
    setting (``precision`` and ``epochs`` in the title where the report holds several)."""
    shown = complete_runs(all_recs, min_seeds)
    recs = [r for r in shown if not r.diverged]  # plots and diagnostics: finite runs
    slug = _slug(dataset, model, precision, f"{epochs}ep" if epochs else "", variant)
    title = (
        md(f"{dataset} / {model}")
        + (f", {precision}" if precision else "")
        + (f", {epochs} epochs" if epochs else "")
        + (f" ({md(variant)})" if variant else "")
    )
    trained = ", ".join(str(e) for e in sorted({r.config.train.epochs for r in all_recs}))
    lines = [
        "",
        f"## {title}",
        "",
        f"{len(all_recs)} runs, {trained} epochs. " + where_trained(all_recs),
        "",
        ip_vs_sp_table([(r.config, r.summary) for r in all_recs], min_seeds=min_seeds),
    ]
    if warnings := mismatched_starts(all_recs) + mixed_data(all_recs):
        lines += ["", *warnings]
    if len({r.config.train.seed for r in shown}) > 1:
        per_seed = per_seed_table([(r.config, r.summary) for r in shown])
        lines += ["", "### Per seed (test accuracy %)", "", per_seed]
    diag = diagnostics_table(recs) if recs else None
    if diag:
        lines += ["", "### Diagnostics (mean ± std over seeds)", "", diag]
    if not recs:
        return lines
    from . import plots  # matplotlib (1 s to import): only when a report draws

    figures = [
        (
            "accuracy vs sparsity",
            plots.plot_metric_vs_sparsity(
                recs, "test_acc", "test accuracy (%)", out / f"{slug}_accuracy.png", 100.0
            ),
        ),
        (
            "IP − SP, paired by seed",
            plots.plot_paired_differences(recs, out / f"{slug}_paired.png"),
        ),
        ("training curves", plots.plot_training_curves(recs, out / f"{slug}_curves.png")),
        (
            "gradient norm at initialisation",
            plots.plot_metric_vs_sparsity(
                recs, "grad_norm_init", "‖∇θ L‖ at init", out / f"{slug}_gradnorm.png"
            ),
        ),
        (
            "generalisation gap",
            plots.plot_metric_vs_sparsity(
                recs, "gap_acc", "train − test accuracy (pts)", out / f"{slug}_gap.png", 100.0
            ),
        ),
        (
            "spatial filter density",
            plots.plot_filter_density(recs, out / f"{slug}_filter_density.png"),
        ),
    ]
    # drawn from the runs' model files; where this report cannot draw one, the figure an
    # earlier report drew into this folder is kept (a report made on another machine than
    # the models' would drop it otherwise)
    kept: set[Path] = set()
    for name, png, draw in (
        ("filter basis: initial vs learned", f"{slug}_bases.png", plots.plot_bases),
        ("sparse filters, SP vs IP", f"{slug}_filters.png", plots.plot_sparse_filters),
    ):
        path = draw(recs, out / png, problems=unusable)
        if path is None and (out / png).is_file():
            path = out / png
            kept.add(path)
        figures.append((name, path))
    for name, path in figures:
        if path is not None:
            lines += ["", f"### {name}", "", f"![{name}]({path.name})"]
            if path in kept:
                lines += ["", KEPT_FIGURE]
    return lines + pareto_section(recs, out, slug)  # when runs hold a latency.json


#: Under a figure drawn from the runs' model files that this report could not draw and kept
#: from an earlier report into the same folder.
KEPT_FIGURE = (
    "(Drawn by an earlier report: this one could not draw it from the run files here. "
    "`model.pt` and `bases_init.pt` stay on the machine that trained a run.)"
)


def write_report(
    root: str | Path,
    out: str | Path | None = None,
    min_seeds: int = 1,
    trust_model_imports: Trust = False,
) -> Path:
    """Write ``report.md`` and its PNG figures for all finished runs under ``root``, one
    section per dataset, model, precision and training length (runs of different precisions
    or lengths are never paired; pairs trained on different kinds of machine are marked). With
    ``min_seeds`` > 1 the tables, diagnostics and figures cover only the rows with at least
    that many runs on each side (the IP vs SP table counts the rows it left out). Pictures
    that need a run's model rebuild it only if it is registered or ``trust_model_imports``
    admits its import path; a run whose model cannot be rebuilt is named and skipped."""
    if min_seeds < 1:
        raise ValueError(f"--min-seeds must be at least 1, got {min_seeds}")
    root = Path(root)
    if root.is_file() and root.name in ("config.json", "summary.json", "metrics.jsonl"):
        root = root.parent  # a file of a run names its run, as for `interspace bench`
    damaged: list[str] = []
    records, unfinished = collect_runs(root, damaged, trust_model_imports)
    records, repeated = drop_duplicates(records)  # before any table or group sees them
    unusable: list[str] = []  # models that could not be rebuilt for the pictures
    if not records:
        raise ValueError(
            f"{root} has no finished runs yet ({len(unfinished)} unfinished"
            + (f", {len(damaged)} with damaged files" if damaged else "")
            + ")"
            + (f"; {damaged[0]}" if damaged else "")  # what is damaged, and how to mend it
        )
    # the default lies in the (perhaps received) folder: a `report` symlink planted there
    # must not carry the report elsewhere; a folder the user names is theirs to choose
    out = Path(out) if out is not None else inside(root / "report", root)
    out.mkdir(parents=True, exist_ok=True)
    # runs of another length are another protocol: never paired across lengths (fine-tuning
    # a trained model, --init-from, has its own length and joins the protocol it fine-tunes);
    # runs of another precision likewise: each precision gets its own sections
    precisions: dict[tuple[str, str], set[str]] = defaultdict(set)
    lengths: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for r in records:
        dm = (r.config.data.dataset, r.config.model.model)
        precisions[dm].add(run_precision(r.config, r.summary))
        if not r.config.model.init_from:
            lengths[(*dm, run_precision(r.config, r.summary))].add(r.config.train.epochs)
    groups: dict[tuple[str, str, str, int], list[RunRecord]] = defaultdict(list)
    for r in records:
        dmp = (r.config.data.dataset, r.config.model.model, run_precision(r.config, r.summary))
        epochs = r.config.train.epochs
        if r.config.model.init_from and len(lengths[dmp]) == 1:
            epochs = next(iter(lengths[dmp]))
        groups[(*dmp, epochs)].append(r)
    failed = [r for r in records if r.diverged]
    lines = [
        f"# Report: {md_code(root, 200)}",
        "",
        f"{len(records)} finished runs"
        + (f" ({len(failed)} diverged)" if failed else "")
        + (f", {len(unfinished)} unfinished" if unfinished else "")
        + (f", {len(damaged)} left out (damaged files)" if damaged else "")
        + (f", {len(repeated)} left out (repeated runs)" if repeated else ""),
    ]
    for r in failed:
        why = r.summary.get("error") or f"test accuracy {r.summary.get('test_acc')}"
        lines += ["", f"- diverged: {md_code(r.path.name)} ({md(_label(r))}): {md(why)}"]
    for problem in damaged + repeated:
        lines += ["", f"- left out: {md(problem)}"]
        print(f"interspace report: left out {problem}", file=sys.stderr)
    for (dataset, model, precision, epochs), group in sorted(groups.items()):
        several = len(lengths[(dataset, model, precision)]) > 1
        named = _names_precision(precisions[(dataset, model)])
        variants = split_variants(group)
        if len(variants) > 1:
            lines += [
                "",
                f"- ⚠ runs of {md(dataset)} / {md(model)} differ in more than seed and "
                f"representation ({md(', '.join(_differing(variants)))}): each setting has "
                "its own table, never one cell",
            ]
        for variant, all_recs in variants:
            lines += _group_section(
                all_recs,
                dataset,
                model,
                precision if named else "",
                epochs if several else None,
                variant,
                min_seeds,
                out,
                unusable,
            )
    for (dataset, model, precision), epochs in sorted(lengths.items()):
        if len(epochs) > 1:
            named = _names_precision(precisions[(dataset, model)])
            same = [
                r
                for r in records
                if (r.config.data.dataset, r.config.model.model) == (dataset, model)
                and run_precision(r.config, r.summary) == precision
            ]
            for variant, recs in split_variants(same, also=("train.epochs",)):
                lines += length_section(
                    recs, dataset, model, min_seeds, out, precision if named else None, variant
                )
    for problem in dict.fromkeys(unusable):
        lines += ["", f"- {problem}"]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report
