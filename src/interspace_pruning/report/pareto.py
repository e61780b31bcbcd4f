"""Accuracy vs measured CPU latency: the paper's claim at matched accuracy.

IP's claim is not that it runs as fast as SP at equal sparsity, but that it reaches a given
accuracy at a higher sparsity, so at equal accuracy it can run faster. This module reads the
``latency.json`` that ``interspace bench --json`` (or a recipe) wrote into each run directory,
plots test accuracy against latency per model (IP and SP on the sparse engine over their
sparsities, dense on torch and on ONNX Runtime as reference lines), and states for SP at 90%
and 95% the fastest IP model whose mean accuracy is at least SP's, with its speed-up.
"""

from __future__ import annotations

import functools
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..foundations.io import CorruptFileError, read_json
from ..foundations.schema import MAPPING, Field, check_fields, check_items
from ..interspace import Representation
from .collect import RunRecord
from .markdown import md

LATENCY_FILE = "latency.json"
#: The most entries (batch sizes) of a ``latency.json`` a report reads.
MAX_BATCH_SIZES = 64
#: The name of a run folder: its configuration's hash (``experiments.grid.run_dir``).
_RUN_FOLDER_NAME = re.compile(r"[0-9a-f]{10}")
#: The SP sparsities the matched-accuracy statement is made at.
MATCH_AT = (0.9, 0.95)


@dataclass(frozen=True)
class Timed:
    """One finished run with its timings (ms per forward pass, by engine) at one batch."""

    model: str
    method: str
    representation: str  # its kind, as summary.json writes it
    sparsity: float
    seed: int
    acc: float
    ms: dict[str, float]
    plan: str = ""  # the sparse engine's note: how many pruned layers it ran sparse

    @property
    def rep(self) -> Representation:
        return Representation.parse(self.representation)


@dataclass(frozen=True)
class Point:
    """A (method, representation, sparsity) over seeds: mean accuracy, median latency."""

    method: str
    representation: str  # its kind
    sparsity: float
    acc: float
    acc_std: float
    ms: float  # the sparse engine's (SP, IP) or torch's (dense)
    ort_ms: float | None
    torch_ms: float | None
    seeds: int
    plan: str = ""

    @property
    def rep(self) -> Representation:
        return Representation.parse(self.representation)


@dataclass(frozen=True)
class Match:
    """The fastest IP model of SP's method at least as accurate as SP at ``sp.sparsity``
    (another method's IP models may be faster still: each method is its own line)."""

    sp: Point
    ip: Point | None

    @property
    def speedup(self) -> float | None:
        return None if self.ip is None else self.sp.ms / self.ip.ms

    def sentence(self) -> str:
        sp = self.sp
        head = f"SP at {sp.sparsity:.0%} ({sp.method}): {sp.acc:.2%}, {sp.ms:.2f} ms"
        if self.ip is None:
            return f"{head}; no IP model reaches that accuracy."
        ip = self.ip
        return (
            f"{head}; the fastest IP {sp.method} model at least as accurate is IP at "
            f"{ip.sparsity:.0%}: "
            f"{ip.acc:.2%}, {ip.ms:.2f} ms; speed-up over that SP model: {self.speedup:.2f}x"
            + (" (IP is slower)." if self.speedup < 1 else ".")
        )


#: A median time: positive (speed-ups divide by it), at least a nanosecond.
_TIMING = Field(("float", "null"), low=1e-6)


def latency_results(path: Path) -> list[dict]:
    """The checked entries of a ``latency.json`` (one per batch size); ``[]`` when the file
    is missing, damaged or not of that shape (a report then has no timings for the run)."""
    return list(_latency_file(path)[1])


def _latency_file(path: Path) -> tuple[dict, tuple[dict, ...]]:
    """A ``latency.json``'s head (whose timings: ``config_hash``, ``source``) and checked
    entries. A report asks for each run's file several times (its setting, batches,
    timings): the file is read and checked once while it stays as it was (same inode, size
    and mtime)."""
    try:
        st = Path(path).stat()
    except OSError:
        return {}, ()
    return _checked_latency(Path(path), (st.st_ino, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=4096)
def _checked_latency(path: Path, _version: tuple[int, int, int]) -> tuple[dict, tuple[dict, ...]]:
    try:
        data = read_json(path, dict)
        results = check_items(data.get("results"), MAPPING, path, "results")
        for i, r in enumerate(results):
            check_fields(
                r,
                {"batch": Field(("int",), low=1), "engines": MAPPING},
                path,
                "",
                f"results[{i}]: ",
            )
            for name, e in r.get("engines", {}).items():
                check_fields(
                    check_items([e], MAPPING, path, name)[0],
                    {"median_ms": _TIMING},
                    path,
                    "",
                    f"results[{i}].engines.{name[:40]}: ",
                )
    except (CorruptFileError, TypeError):  # TypeError: "results" is not a list
        return {}, ()
    if len(results) > MAX_BATCH_SIZES:
        return {}, ()  # not a file bench wrote (one entry a batch size)
    head = {k: data[k][:200] for k in ("config_hash", "source") if isinstance(data.get(k), str)}
    return head, tuple(_slim(r) for r in results if "batch" in r)


def _slim(entry: dict) -> dict:
    """What a report uses of an entry (the cache keeps it for the whole process): the
    batch, each engine's median and note, and how it was timed; strings cut short."""

    def short(value: object) -> object:
        return value[:300] if isinstance(value, str) else value

    engines = {
        name[:40]: {k: short(e[k]) for k in ("median_ms", "note") if k in e}
        for name, e in list(entry["engines"].items())[:16]
    }
    said = {k: short(entry[k]) for k in (*BENCH_SETTINGS, "repeats") if k in entry}
    if isinstance(said.get("input_shape"), list):
        said["input_shape"] = said["input_shape"][:8]
    return {"batch": entry["batch"], "engines": engines, **said}


def foreign_timings(record: RunRecord) -> str:
    """Why ``record``'s ``latency.json`` holds another run's timings ('' if it is its own,
    or it has none): the run it names (``config_hash``, which ``interspace bench`` writes;
    in older files, a run folder's name ending ``source``) is not this one. A copied file
    must not make another model's speed this run's."""
    head, results = _latency_file(record.path / LATENCY_FILE)
    if not results:
        return ""
    want = record.config_hash
    theirs = head.get("config_hash")
    if theirs is None:
        named = Path(head.get("source", "")).name
        theirs = named if _RUN_FOLDER_NAME.fullmatch(named) else want
    if theirs != want:
        return f"holds the timings of run {md(theirs, 64)}, not this run's ({want})"
    return ""


def run_latency(record: RunRecord) -> list[dict]:
    """The entries of ``record``'s own ``latency.json`` (``[]`` for another run's, see
    :func:`foreign_timings`)."""
    return [] if foreign_timings(record) else latency_results(record.path / LATENCY_FILE)


def read_latency(path: Path, batch: int | None) -> dict[str, float] | None:
    """``{engine: median ms}`` at ``batch`` (None: the largest) from a ``latency.json``;
    the sparse engine's note under the key ``"plan"``."""
    results = {r["batch"]: r for r in latency_results(path)}
    if not results:
        return None
    r = results.get(batch if batch is not None else max(results))
    if r is None:
        return None
    engines = r.get("engines", {})
    out: dict = {
        name: float(e["median_ms"]) for name, e in engines.items() if e.get("median_ms") is not None
    }
    if "sparse" in out:
        out["plan"] = md(engines["sparse"].get("note", ""), 120)
    return out


def timed_runs(records: Iterable[RunRecord], batch: int | None = None) -> list[Timed]:
    """The runs that have a ``latency.json`` with timings at ``batch``."""
    out = []
    for r in records:
        ms = None if foreign_timings(r) else read_latency(r.path / LATENCY_FILE, batch)
        if not ms:
            continue
        plan = ms.pop("plan", "")
        p = r.config.prune
        rep = p.representation
        out.append(
            Timed(
                r.config.model.model,
                "dense" if rep.is_dense else p.method,
                rep.kind,
                0.0 if rep.is_dense else p.sparsity,
                r.config.train.seed,
                float(r.summary["test_acc"]),
                ms,
                plan,
            )
        )
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def dense_reference(runs: Sequence[Timed]) -> dict[str, float]:
    """``{engine: median ms}`` of the dense computation over ``runs``, for torch and ONNX
    Runtime: every run of one model timed its dense (folded) form beside its own engine,
    so these are the dense model's times on this machine whether or not a dense run was
    timed. :func:`points` puts every run's times on this scale."""
    return {
        e: m
        for e in ("torch", "onnxruntime")
        if (m := _median([t.ms[e] for t in runs if t.ms.get(e)])) is not None
    }


def points(runs: Sequence[Timed]) -> list[Point]:
    """Runs grouped over seeds. SP and IP are timed on the sparse engine, dense on torch.

    Every run of one model also timed the same dense computation (torch dense, and ONNX
    Runtime where installed) in the same rounds. A drift of a busy machine between runs
    slows all of a run's engines alike, so each run's times are divided by its drift
    factor: its reference time over the median reference time of all runs. With both
    references the smaller factor counts, because one engine can be slow for one model
    alone (measured: torch dense 1.5x slower for one Fashion-MNIST model in every
    retiming, while ONNX Runtime and the sparse engine were not). Runs without a
    reference keep their own times.
    """
    refs = dense_reference(runs)

    def norm(t: Timed, engine: str) -> float | None:
        if engine not in t.ms:
            return None
        factors = [t.ms[e] / ref for e, ref in refs.items() if t.ms.get(e)]
        return t.ms[engine] / min(factors) if factors else t.ms[engine]

    groups: dict[tuple, list[Timed]] = defaultdict(list)
    for t in runs:
        groups[(t.method, t.representation, t.sparsity)].append(t)
    out = []
    for (method, rep, sparsity), ts in sorted(groups.items()):
        engine = "torch" if ts[0].rep.is_dense else "sparse"
        ms = _median([v for t in ts if (v := norm(t, engine)) is not None])
        if ms is None:
            continue
        accs = [t.acc for t in ts]
        out.append(
            Point(
                method,
                rep,
                sparsity,
                statistics.fmean(accs),
                statistics.stdev(accs) if len(accs) > 1 else 0.0,
                ms,
                _median([v for t in ts if (v := norm(t, "onnxruntime")) is not None]),
                _median([t.ms["torch"] for t in ts if "torch" in t.ms]),
                len(ts),
                "; ".join(sorted({t.plan.removeprefix("auto: ") for t in ts if t.plan})),
            )
        )
    return out


def matched(pts: Sequence[Point], method: str, sp_sparsity: float) -> Match | None:
    """The fastest IP point of ``method`` whose mean accuracy is >= SP's at ``sp_sparsity``
    (None when there is no SP point at that sparsity)."""
    sp = next(
        (p for p in pts if p.method == method and p.rep.is_spatial and p.sparsity == sp_sparsity),
        None,
    )
    if sp is None:
        return None
    ips = [p for p in pts if p.method == method and p.rep.is_interspace and p.acc >= sp.acc]
    return Match(sp, min(ips, key=lambda p: (p.ms, -p.acc)) if ips else None)


def plot_pareto(
    pts: Sequence[Point], title: str, path: Path, reference: dict[str, float] | None = None
) -> Path:
    """Test accuracy vs latency: a line per (method, representation), dense as references
    (the dense run's, else ``reference``: the dense model as timed beside the pruned runs)."""
    from matplotlib.ticker import FuncFormatter

    from .plots import COLORS, LABELS, _save, plt

    fig, ax = plt.subplots(figsize=(8.4, 4.4))
    markers = "osD^v<>"
    methods = sorted({p.method for p in pts if not p.rep.is_dense})
    for i, method in enumerate(methods):
        for rep in ("sp", "ip"):
            line = sorted(
                (p for p in pts if p.method == method and p.rep.kind == rep),
                key=lambda p: p.sparsity,
            )
            if not line:
                continue
            label = LABELS[rep] + (f", {method}" if len(methods) > 1 else "")
            ax.plot(
                [p.ms for p in line],
                [p.acc * 100 for p in line],
                marker=markers[i % len(markers)],
                color=COLORS[rep],
                label=label,
            )
            for p in line:
                ax.annotate(
                    f"{p.sparsity:.0%}",
                    (p.ms, p.acc * 100),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                    color=COLORS[rep],
                )
    for p in (p for p in pts if p.rep.is_dense):
        ax.axhline(p.acc * 100, color="gray", lw=0.8, ls=":", label=f"dense acc {p.acc:.1%}")
        ax.axvline(p.ms, color="black", lw=1, ls="--", label=f"dense torch {p.ms:.2f} ms")
        if p.ort_ms is not None:
            ax.axvline(
                p.ort_ms, color="tab:green", lw=1, ls="--", label=f"dense ONNX RT {p.ort_ms:.2f} ms"
            )
    if reference and not any(p.rep.is_dense for p in pts):
        for engine, color, label in (
            ("torch", "black", "torch"),
            ("onnxruntime", "tab:green", "ONNX RT"),
        ):
            if (ms := reference.get(engine)) is not None:
                ax.axvline(ms, color=color, lw=1, ls="--", label=f"dense {label} {ms:.2f} ms")
    for method in methods:  # an arrow from each SP model to its fastest match
        for s in MATCH_AT:
            m = matched(pts, method, s)
            if m is None or m.ip is None or m.ip.ms >= m.sp.ms:
                continue
            ax.annotate(
                "",
                (m.ip.ms, m.ip.acc * 100),
                (m.sp.ms, m.sp.acc * 100),
                arrowprops={"arrowstyle": "->", "color": "gray", "lw": 0.8},
            )
            mid = ((m.ip.ms * m.sp.ms) ** 0.5, (m.ip.acc + m.sp.acc) * 50)  # log-x midpoint
            ax.text(*mid, f"{m.speedup:.2f}x", fontsize=7, color="gray")
    ax.set_xscale("log")
    xs = [p.ms for p in pts] + [p.ort_ms for p in pts if p.ort_ms is not None]
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    if max(xs) / min(xs) < 30:  # few decades: label the minor ticks too
        ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("CPU latency per batch (ms, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # off the points
    return _save(fig, path)


def table(pts: Sequence[Point], reference: dict[str, float] | None = None) -> str:
    """Markdown: accuracy and latency per point, speed-ups over dense torch and ONNX RT.

    The dense times are the dense run's where one was timed, else ``reference``
    (:func:`dense_reference`: the dense model as timed beside the pruned runs)."""
    dense = next((p for p in pts if p.rep.is_dense), None)
    ref = reference or {}
    ref_t = dense.ms if dense else ref.get("torch")
    ref_o = dense.ort_ms if dense else ref.get("onnxruntime")
    lines = [
        "| run | sparsity | test acc (%) | ms (engine) | vs dense torch | vs dense ONNX RT "
        "| sparse engine plan |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {"dense": 0, "sp": 1, "ip": 2}
    for p in sorted(pts, key=lambda p: (order[p.representation], p.method, p.sparsity)):
        name = "dense" if p.rep.is_dense else f"{p.rep.kind.upper()} {p.method}"
        engine = "torch" if p.rep.is_dense else "sparse"
        std = f" ± {p.acc_std * 100:.2f}" if p.seeds > 1 else ""
        vs_t = f"{ref_t / p.ms:.2f}x" if ref_t else "-"
        vs_o = f"{ref_o / p.ms:.2f}x" if ref_o else "-"
        lines.append(
            f"| {name} | {p.sparsity:.0%} | {p.acc * 100:.2f}{std} | {p.ms:.2f} ({engine}) | "
            f"{vs_t} | {vs_o} | {p.plan or '-'} |"
        )
    if dense is None and ref_t:  # no dense run timed: the dense model beside the pruned ones
        lines.append(
            f"| dense (timed beside the pruned runs) | 0% | - | {ref_t:.2f} (torch) | 1.00x | "
            f"{f'{ref_o / ref_t:.2f}x' if ref_o else '-'} | - |"
        )
    if ref_o is not None and ref_t:
        acc = f"{dense.acc * 100:.2f}" if dense else "-"
        name = "dense" if dense else "dense (timed beside the pruned runs)"
        lines.append(
            f"| {name} | 0% | {acc} | {ref_o:.2f} (ONNX RT) | {ref_t / ref_o:.2f}x | 1.00x | - |"
        )
    return "\n".join(lines)


def statements(pts: Sequence[Point]) -> list[str]:
    """The matched-accuracy sentence for each method at each SP sparsity of ``MATCH_AT``."""
    methods = sorted({p.method for p in pts if p.rep.is_spatial})
    out = []
    for method in methods:
        for s in MATCH_AT:
            m = matched(pts, method, s)
            if m is not None:
                out.append(m.sentence())
    return out


#: What a ``latency.json`` records about how it was timed: timings taken otherwise (another
#: CPU, thread count, clock or input size) are not comparable and never share a table.
BENCH_SETTINGS = ("cpu", "kernel", "threads", "clock", "input_shape")


def bench_setting(record: RunRecord) -> str:
    """How ``record``'s timings were taken, as one line ("" without timings)."""
    for x in run_latency(record):
        said = {k: x.get(k, "wall" if k == "clock" else None) for k in BENCH_SETTINGS}
        shape = said["input_shape"]
        size = "x".join(map(str, shape)) if isinstance(shape, list) else shape
        return md(
            f"{said['cpu']}, kernel {said['kernel']}, {said['threads']} threads, "
            f"{said['clock']} clock, input {size}",
            200,
        )
    return ""


def _groups(records: Iterable[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.config.data.dataset, r.config.model.model)].append(r)
    return groups


def _batches(records: Iterable[RunRecord]) -> list[int]:
    found = set()
    for r in records:
        found |= {x["batch"] for x in run_latency(r)}
    return sorted(found)


def pareto_section(
    records: Sequence[RunRecord], out: Path, slug: str, batch: int | None = None
) -> list[str]:
    """Markdown lines (plot, table, statements) for one model's runs; empty without timings.

    ``batch``: which batch size to plot (default: the largest timed). Runs timed in other
    ways (:data:`BENCH_SETTINGS`) get a section each, marked ⚠: never one comparison."""
    foreign = [
        f"{md(r.path.name, 64)}/{LATENCY_FILE} {why}"
        for r in records
        if (why := foreign_timings(r))
    ]
    for line in foreign:
        print(f"interspace report: left out {line}", file=sys.stderr)
    left_out = [f"- ⚠ left out of the timings: {line}" for line in foreign]
    if left_out:
        left_out = ["", *left_out]
    settings: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        if setting := bench_setting(r):
            settings[setting].append(r)
    if len(settings) <= 1:
        return _timed_section(records, out, slug, batch) + left_out
    lines = [
        "",
        f"⚠ these runs were timed in {len(settings)} ways (CPU, threads, clock or input "
        "size): each has its own section, never one comparison",
    ]
    for i, (setting, recs) in enumerate(sorted(settings.items()), 1):
        section = _timed_section(recs, out, f"{slug}_timing{i}", batch, f", timed on {setting}")
        lines += section
    return lines + left_out


def _timed_section(
    records: Sequence[RunRecord], out: Path, slug: str, batch: int | None, where: str = ""
) -> list[str]:
    batches = _batches(records)
    if not batches:
        return []
    batch = batch if batch in batches else max(batches)
    runs = timed_runs(records, batch)
    pts = points(runs)
    if not pts:
        return []
    first = records[0].config
    title = f"{first.data.dataset} / {first.model.model}: accuracy vs latency, batch {batch}"
    png = Path(out) / f"{slug}_accuracy_latency_b{batch}.png"
    ref = dense_reference(runs)
    path = plot_pareto(pts, title, png, ref)
    heading = f"### accuracy vs CPU latency (batch {batch}){where}"
    lines = ["", heading, "", f"![{title}]({path.name})"]
    lines += ["", *(f"- {s}" for s in statements(pts) or ["no SP run at 90% or 95%."])]
    for b in sorted(batches, key=lambda b: b != batch):  # the plotted batch first
        if b == batch:
            b_pts, b_ref = pts, ref
        else:
            b_runs = timed_runs(records, b)
            b_pts, b_ref = points(b_runs), dense_reference(b_runs)
        lines += ["", f"Batch {b}:", "", table(b_pts, b_ref)]
        if b != batch:
            lines += ["", *(f"- {s}" for s in statements(b_pts))]
    info = _bench_info(records, batch)
    if info:
        lines += ["", info]
    return lines


def _bench_info(records: Iterable[RunRecord], batch: int) -> str:
    """Where the timings come from (CPU, kernel, threads), from the first latency.json."""
    for r in records:
        for x in run_latency(r):
            if x["batch"] == batch:
                said = {k: md(x.get(k), 80) for k in ("cpu", "kernel", "threads", "repeats")}
                return (
                    f"Timed by `interspace bench` on {said['cpu']}, kernel: {said['kernel']}, "
                    f"threads: {said['threads']}, median {md(x.get('clock', 'wall'), 20)} time "
                    f"of {said['repeats']} passes per engine and run, the engines taking turns "
                    "in blocks (median over seeds); SP and IP on the sparse engine (auto "
                    "mode), dense on torch (BatchNorm fused) and "
                    "ONNX Runtime. Each run's times are divided by its drift factor: its dense "
                    "reference times over their medians across runs, the smaller of torch's "
                    "and ONNX Runtime's (drifts between runs cancel)."
                )
    return ""


def write_pareto(records: Sequence[RunRecord], out: Path, batch: int | None = None) -> str:
    """Plots (one per model) into ``out`` and the Markdown with tables and statements."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for (dataset, model), recs in sorted(_groups(records).items()):
        lines = pareto_section(recs, out, f"{dataset}_{model}", batch)
        if lines:
            parts.append(f"## {dataset} / {model}\n" + "\n".join(lines))
    if not parts:
        raise ValueError(
            "no run has timings yet: run `interspace bench DIR --json DIR/latency.json`"
        )
    return "\n\n".join(parts)
