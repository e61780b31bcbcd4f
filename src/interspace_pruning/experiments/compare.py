"""The main job: SP vs IP (vs dense) from the same initial weights and the same data order.

With several seeds every representation trains once per seed; the table shows mean ± std
over seeds and the verdict IP − SP paired by seed (each seed's SP and IP share their
initial weights, pruning batches and data order), so one lucky seed cannot make the
headline.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..foundations.hparams import to_dict
from ..foundations.io import atomic_write_json, atomic_write_text, inside
from ..tracking import TrackingScope, log_group
from ..training import distributed
from .config import RunConfig
from .run import claim_run_dir, run, with_representation
from .run_setup import load_data
from .runfiles import read_summary
from .stats import ALPHA, Paired, p_is, paired
from .threads import Threads, training_threads

COLUMNS = [
    ("representation", "repr", "{}"),
    ("test_acc", "test acc", "{:.2%}"),
    ("best_test_acc", "best acc", "{:.2%}"),
    ("train_loss", "final train loss", "{:.4f}"),
    ("nonzero", "nonzero prunable", "{}"),
    ("basis_params", "FB params", "{}"),
    ("basis_overhead", "FB overhead", "{:.3%}"),
    ("sparse_flops", "MFLOPs/sample", "{:.2f}"),
    ("sparse_bytes", "file (KB)", "{:.1f}"),
    ("wall_time", "wall time", "{:.1f} s"),
]


SCALE = {"sparse_flops": 1e6, "sparse_bytes": 1e3}
#: Columns shown as mean ± std over seeds (the others as their mean).
SPREAD = ("test_acc", "best_test_acc", "train_loss")


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), as the report computes them."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Comparison:
    config: RunConfig
    #: One summary per run, each with its ``seed``, in the order trained.
    rows: list[dict]
    #: The seeds trained (default: ``config.train.seed`` alone).
    seeds: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.seeds:
            self.seeds = [self.config.train.seed]
        for r in self.rows:
            r.setdefault("seed", self.seeds[0])

    def representations(self) -> list[str]:
        return list(dict.fromkeys(r["representation"] for r in self.rows))

    def accuracy(self, rep: str) -> dict[int, float]:
        """Final test accuracy of ``rep`` by seed."""
        return {r["seed"]: r["test_acc"] for r in self.rows if r["representation"] == rep}

    def differences(self) -> list[float]:
        """``IP - SP`` final test accuracy for each seed, in seed order (fractions)."""
        sp, ip = self.accuracy("sp"), self.accuracy("ip")
        return [ip[s] - sp[s] for s in self.seeds if s in sp and s in ip]

    def winner(self) -> str:
        """``"ip"`` or ``"sp"`` if ahead in every seed, ``"tie"`` if all equal, else
        ``"mixed"`` (the report's rule)."""
        diffs = self.differences()
        if all(d > 0 for d in diffs):
            return "ip"
        if all(d < 0 for d in diffs):
            return "sp"
        return "tie" if all(d == 0 for d in diffs) else "mixed"

    def _cell(self, key: str, fmt: str, rows: list[dict]) -> str:
        values = [r[key] for r in rows if r.get(key) is not None]
        if not values or isinstance(values[0], str):
            return values[0] if values else "-"
        scale = SCALE.get(key, 1)
        m, s = _mean_std([v / scale for v in values])
        if len(values) > 1 and key in SPREAD:
            spread = fmt.format(s)
            if spread.endswith("%"):  # "98.1 ± 0.4%", not "98.1% ± 0.4%"
                return f"{fmt.format(m)[:-1]} ± {spread}"
            return f"{fmt.format(m)} ± {spread}"
        if fmt == "{}":
            return str(round(m))
        return fmt.format(m)

    def markdown(self) -> str:
        """One row per representation: with several seeds, mean ± std over them (accuracy,
        loss) or the mean (the rest; wall time per run)."""
        head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
        sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
        lines = [head, sep]
        for rep in self.representations():
            rows = [r for r in self.rows if r["representation"] == rep]
            cells = [self._cell(k, fmt, rows) for k, _, fmt in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def verdict(self) -> str:
        diffs = [d * 100 for d in self.differences()]
        p, c = self.config.prune, self.config
        setting = (
            f"{p.method} at {p.sparsity:.0%} sparsity, {c.model.model} on {c.data.dataset}, "
            f"{c.train.epochs} epochs"
        )
        if len(diffs) == 1:
            who = {"ip": "IP ahead", "sp": "SP ahead", "tie": "tie"}[self.winner()]
            return (
                f"{who}: IP - SP = {diffs[0]:+.2f} points test accuracy ({setting}, "
                f"seed {self.seeds[0]}; one seed, no test: --seeds 0 1 2 for mean ± std)"
            )
        m, s = _mean_std(diffs)
        ahead = sum(d > 0 for d in diffs)
        who = {
            "ip": "IP ahead in every seed",
            "sp": "SP ahead in every seed",
            "tie": "tie in every seed",
            "mixed": f"mixed: IP ahead in {ahead} of {len(diffs)} seeds",
        }[self.winner()]
        per_seed = ", ".join(f"{d:+.2f}" for d in diffs)
        seeds = " ".join(str(x) for x in self.seeds)
        return (
            f"{who}: IP - SP = {m:+.2f} ± {s:.2f} points test accuracy (mean ± std over "
            f"seeds {seeds}, paired by seed: {per_seed}; {setting}); {self._test_text()}"
        )

    def paired_test(self) -> Paired | None:
        """The paired t-test of IP - SP over the seeds (points; ``None`` for one seed)."""
        sp, ip = self.accuracy("sp"), self.accuracy("ip")
        seeds = [s for s in self.seeds if s in sp and s in ip]
        if len(seeds) < 2:
            return None
        return paired([ip[s] * 100 for s in seeds], [sp[s] * 100 for s in seeds])

    def _test_text(self) -> str:
        t = self.paired_test()
        if t is None or t.p is None:
            return "no spread between seeds: no t-test"
        if t.p < ALPHA:
            side = "IP" if t.mean > 0 else "SP"
            result = f"{side} wins (p < {ALPHA})"
        else:
            result = f"no significant difference at p < {ALPHA} with {t.n} seeds"
        return f"95% CI [{t.low:+.2f}, {t.high:+.2f}], paired t-test {p_is(t.p)}: {result}"

    def to_json(self) -> dict:
        diffs = self.differences()
        m, s = _mean_std(diffs) if diffs else (None, None)
        t = self.paired_test()
        test = None
        if t is not None and t.p is not None:
            test = {"p": t.p, "ci95_points": [t.low, t.high], "significant": t.p < ALPHA}
        return {
            "config": to_dict(self.config),
            "seeds": self.seeds,
            "rows": self.rows,
            "winner": self.winner(),  # ahead in every seed (significance: paired_t_test)
            "ip_minus_sp": {"per_seed": diffs, "mean": m, "std": s},
            "paired_t_test": test,
        }


def _check_seeds(seeds: Sequence[int] | None, cfg: RunConfig) -> list[int]:
    if seeds is None:
        return [cfg.train.seed]
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {' '.join(map(str, seeds))}")
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must be >= 0, got {' '.join(map(str, seeds))}")
    return seeds


def compare(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    dense: bool = True,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    seeds: Sequence[int] | None = None,
    threads: Threads = "auto",
) -> Comparison:
    """Train SP, IP and (optionally) dense under ``cfg``; write JSON and Markdown to ``out_dir``.

    ``seeds``: train each representation once per seed (default: ``cfg.train.seed`` only);
    with more than one, run ``rep`` of seed ``s`` lives in ``out_dir/seed<s>/<rep>``, else in
    ``out_dir/<rep>``. ``progress``: a bar over the runs and one over each run's epochs (on
    a terminal), and a line on stderr as each run finishes. With ``cfg.train.log``, every
    run logs to its trackers in the group ``compare <out name>``, and the table to the
    group's own tracker run. An ``out_dir`` that already holds these runs is refused unless
    ``resume=True`` (finished runs are read back, unfinished ones continue) or
    ``overwrite=True`` (train again). ``threads``: torch's CPU threads while training, by
    the rule of ``interspace compare --threads`` (:mod:`.threads`): ``"auto"`` (the
    default, as on the command line: one thread for a tiny model on the CPU), a count, or
    ``None`` for torch's setting as it is; torch's count is restored afterwards.
    """
    seeds = _check_seeds(seeds, cfg)
    with training_threads(threads, [cfg]):
        return _compare(cfg, out_dir, dense, progress, resume, overwrite, seeds)


def _compare(
    cfg: RunConfig,
    out_dir: str | Path | None,
    dense: bool,
    progress: bool,
    resume: bool,
    overwrite: bool,
    seeds: list[int],
) -> Comparison:
    dataset = load_data(cfg.data)
    out = Path(out_dir) if out_dir is not None else None
    reps = ["sp", "ip"] + (["dense"] if dense else [])
    plan = [(s, rep) for s in seeds for rep in reps]
    talk = progress and distributed.info().is_main
    if talk:
        where = f" -> {out}" if out is not None else ""
        threads = torch.get_num_threads()
        print(
            f"compare: {len(plan)} runs ({', '.join(reps)} x seed"
            f"{'s' if len(seeds) > 1 else ''} {' '.join(map(str, seeds))}), "
            f"{threads} torch thread{'s' if threads > 1 else ''}{where}",
            file=sys.stderr,
        )
    # disable=None: a bar only on a terminal; the lines below go everywhere
    bar = tqdm(total=len(plan), desc="runs", unit="run", disable=None if talk else True)
    scope = TrackingScope(out, f"compare {out.name}") if out is not None else None
    rows = []
    for i, (seed, rep) in enumerate(plan, 1):
        sub = None
        if out is not None:
            sub = out / f"seed{seed}" / rep if len(seeds) > 1 else out / rep
            sub = inside(sub, out)  # a planted symlink must not take a run elsewhere
        seed_cfg = replace(cfg, train=replace(cfg.train, seed=seed))
        sub_cfg = with_representation(seed_cfg, rep)
        done = resume and not overwrite and sub is not None and (sub / "summary.json").is_file()
        if done:
            claim_run_dir(sub, sub_cfg, resume=True, overwrite=False)  # same config, or refuse
            summary = read_summary(sub / "summary.json", sub_cfg)  # finished: show it
        else:
            result = run(
                sub_cfg,
                sub,
                dataset=dataset,
                progress=progress,
                resume=resume,
                overwrite=overwrite,
                tracking=scope,
            )
            summary = result.summary
        rows.append({**summary, "seed": seed})
        if talk:
            when = "finished before" if done else f"{summary['wall_time']:.1f} s"
            line = (
                f"[{i}/{len(plan)}] seed {seed} {rep}: test acc {summary['test_acc']:.2%} ({when})"
            )
            tqdm.write(line, file=sys.stderr)
        bar.update(1)
    bar.close()
    comparison = Comparison(cfg, rows, seeds)
    if out is not None:
        atomic_write_json(out / "compare.json", comparison.to_json())
        atomic_write_text(
            out / "compare.md", comparison.markdown() + "\n\n" + comparison.verdict() + "\n"
        )
        if distributed.info().is_main:
            text = comparison.markdown() + "\n\n" + comparison.verdict()
            log_group(cfg.train.log, scope, len(plan), texts={"comparison": text})
    return comparison
