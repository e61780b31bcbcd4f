"""``interspace``: train sparse CNNs with interspace pruning (IP) or standard pruning (SP)."""

from __future__ import annotations

import argparse
import difflib
import errno
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..experiments import RunConfig, compare, run
from ..experiments.config import add_run_arguments, config_from_namespace
from ..experiments.grid import GridProblems, run_dir
from ..experiments.run import cli_option_names
from ..experiments.runfiles import DIVERGED
from ..experiments.sweep import (
    MAX_CELLS,
    load_sweep,
    parse_max_cells,
    parse_shard,
    run_sweep,
    shard_configs,
    trackers_of,
    with_trackers,
)
from ..experiments.threads import auto_threads
from ..foundations.claims import claim_owner, stale_after
from ..foundations.hparams import config_hash
from ..report import write_report
from ..tracking import TrackingScope, log_group, tracker_class
from ..training import TrainingStopped, distributed
from ..training.loop import StopOnSignals
from . import bench as bench_cmd
from . import campaign as campaign_cmd
from .trust import add_trust_arguments, model_imports, trust_from

TRAIN_EXAMPLES = """examples:
  interspace train                                   # IP, SNIP 98%, convnet on digits
  interspace train --representation sp --method synflow --sparsity 0.9
  interspace train --dataset fashion-mnist --epochs 5 --out runs/fmnist-ip
  interspace train --method rigl --sparsity 0.9                # dynamic sparse training
  interspace train --method imp --imp-rounds 4 --sparsity 0.9  # lottery ticket, rewind to init
  interspace train --representation dense --out runs/dense     # then prune it when trained:
  interspace train --init-from runs/dense --method magnitude --basis pca --epochs 5 --lr 0.01
  interspace train --dataset cifar10 --root data --model resnet20 --epochs 160 \\
      --batch-size 128 --lr 0.1 --weight-decay 1e-4 --method snip --sparsity 0.95
"""

SWEEP_EXAMPLES = """examples:
  interspace sweep recipes/fashion_mnist_pai.yaml            # then: interspace report runs/...
  interspace sweep recipes/cifar10_cpu.yaml --dry-run
  interspace sweep recipes/cifar10_cpu.yaml --shard 2/8 --no-report   # one of 8 machines
"""

COMPARE_EXAMPLES = """examples:
  interspace compare                                  # SP vs IP vs dense, SNIP 98%, digits
  interspace compare --epochs 10 --seeds 0 1 2        # make demo: mean ± std over 3 seeds
  interspace compare --method synflow --sparsity 0.99 --no-dense
  interspace compare --dataset fashion-mnist --train-subset 10000 --epochs 5
"""


THREADS_HELP = (
    "CPU threads for torch: N, or auto (default): 1 for a tiny model on the CPU (under 1 "
    "GFLOP per batch: a busy machine slows such a model down many times with more), else "
    "one per core less the cores the load average shows busy; OMP_NUM_THREADS is respected"
)


def _threads(text: str) -> int | str:
    """``--threads``: a count >= 1 or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or auto, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _auto_threads(ns: argparse.Namespace, configs: list[RunConfig]) -> None:
    """``--threads auto``: the rule of :mod:`..experiments.threads`."""
    if getattr(ns, "threads", None) != "auto":
        return
    choice = auto_threads(configs)
    if choice is not None:
        torch.set_num_threads(choice.threads)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors instead of the whole usage block, each pointing to the
    help of the command it is about (``interspace train --help``, not ``interspace --help``)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        # argparse leaves a subcommand's unknown options to the top parser, whose error
        # names `interspace --help`; the subcommand's own parser says it, with a guess
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = _command_parser(self, ns)
            parser.error(_unknown_arguments(extras, parser))
        return ns


def _command_parser(parser: argparse.ArgumentParser, ns: argparse.Namespace):
    """The subcommand's parser that parsed ``ns`` (``parser`` itself if none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(getattr(ns, action.dest, None), parser)
    return parser


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _unknown_arguments(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """``unknown option --epoh (did you mean --epochs?)``: each unknown option with the
    closest of the parser's own, or the stray values when no option is unknown."""
    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    flags = [e.split("=", 1)[0] for e in extras if e.startswith("-") and not _is_number(e)]
    if not flags:
        return f"unexpected argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
    named = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1)
        named.append(flag + (f" (did you mean {close[0]}?)" if close else ""))
    return f"unknown option{'s' if len(named) > 1 else ''} {', '.join(named)}"


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)  # RunConfig's flags; schedule options from the schedule registry
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run directory (default: runs/<command>-<configuration hash>, e.g. runs/train-…)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
    g.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    g.add_argument(
        "--overwrite", action="store_true", help="replace a run that already exists in --out"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="interspace",
        description="Train sparse CNNs with interspace pruning (IP) or standard pruning (SP).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter
    t = sub.add_parser(
        "train",
        help="prune (at initialisation, during training or iteratively) and train one model",
        description="Prune a freshly initialised model (IP, SP or dense) and train it. "
        "Writes config.json, metrics.jsonl (one line per epoch) and summary.json.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=fmt,
    )
    _add_run_arguments(t)
    c = sub.add_parser(
        "compare",
        help="SP vs IP (vs dense) from the same init and data order",
        description="The main job: train the same model from the same initial weights and "
        "the same data order with SP and with IP (and dense as a reference), under one "
        "method and sparsity, and print a table. Also writes compare.json and compare.md.",
        epilog=COMPARE_EXAMPLES,
        formatter_class=fmt,
    )
    _add_run_arguments(c)
    c.add_argument("--no-dense", action="store_true", help="skip the dense reference run")
    c.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="train every representation once per seed (instead of --seed): the table shows "
        "mean ± std over seeds and IP - SP paired by seed",
    )
    s = sub.add_parser(
        "sweep",
        help="run a grid of configurations from a YAML file (resumable)",
        description="Run every combination of a YAML sweep file. Each run lives in a folder "
        "named by the hash of its configuration; finished runs are skipped and interrupted "
        "ones continue from their checkpoints, so a sweep can be stopped and restarted.",
        epilog=SWEEP_EXAMPLES,
        formatter_class=fmt,
    )
    s.add_argument("config", type=Path, help="sweep file (see recipes/*.yaml)")
    s.add_argument("--out", type=Path, default=None, help="output folder (default: from file)")
    s.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    s.add_argument("--threads", type=_threads, default="auto", help=THREADS_HELP)
    s.add_argument("--no-report", action="store_true", help="skip the report at the end")
    s.add_argument(
        "--max-cells",
        type=parse_max_cells,
        default=MAX_CELLS,
        metavar="N",
        help=f"refuse a file that asks for more runs than this (default: {MAX_CELLS})",
    )
    s.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="train only shard I of N (1-based: runs I, I+N, I+2N, ... of the file's order), "
        "e.g. one per SLURM array task",
    )
    s.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait at the end for runs that other processes are training",
    )
    s.add_argument(
        "--log",
        action="append",
        default=None,
        metavar="TRACKER",
        help="log every run to an experiment tracker: tensorboard, wandb or mlflow "
        "(repeatable; replaces the file's train.log; the report plots go to the sweep's group)",
    )
    s.add_argument(
        "--log-every",
        type=int,
        default=None,
        metavar="N",
        help="with --log: also log loss, learning rate and mask updates every N steps",
    )
    add_trust_arguments(s)
    r = sub.add_parser(
        "report",
        help="tables and plots for a run or sweep directory",
        description="Write report.md (IP vs SP tables: mean ± std over seeds, IP − SP; "
        "diagnostics) and PNG plots (accuracy vs sparsity, training curves, gradient norms, "
        "generalisation gaps, filter density, filter bases, sparse filters).",
        formatter_class=fmt,
        epilog="example:\n  interspace report runs/fmnist-pai\n",
    )
    r.add_argument("dir", type=Path, help="a run directory or a sweep directory")
    r.add_argument("--out", type=Path, default=None, help="default: DIR/report")
    r.add_argument(
        "--min-seeds",
        type=int,
        default=1,
        help="report only the rows with this many runs on each side, in every table and "
        "figure (3: only complete cells, so the report stays fixed while a sweep goes on)",
    )
    add_trust_arguments(r)
    bench_cmd.add_parser(sub, fmt)
    campaign_cmd.add_parser(sub, fmt)
    return parser


def _config(ns: argparse.Namespace) -> RunConfig:
    return config_from_namespace(ns)


def _out_dir(ns: argparse.Namespace, cfg: RunConfig) -> Path:
    return ns.out if ns.out is not None else Path("runs") / f"{ns.command}-{config_hash(cfg)}"


def _cmd_train(ns: argparse.Namespace) -> None:
    cfg = _config(ns)
    out = _out_dir(ns, cfg)
    _check_out_dir(out)
    _auto_threads(ns, [cfg])
    result = run(cfg, out, progress=not ns.quiet, resume=ns.resume, overwrite=ns.overwrite)
    if not distributed.info().is_main:
        return
    s = result.summary
    if result.already_finished:
        print(f"{out} holds a finished run: nothing to do (--overwrite trains it again)")
    print(
        f"{s['representation']}: test acc {s['test_acc']:.2%} (best {s['best_test_acc']:.2%}), "
        f"train loss {s['train_loss']:.4f}, sparsity {s['sparsity']:.2%}, "
        f"{s['wall_time']:.1f} s -> {out}"
    )


def _cmd_compare(ns: argparse.Namespace) -> None:
    cfg = _config(ns)
    out = _out_dir(ns, cfg)
    _check_out_dir(out)
    result = compare(
        cfg,
        out,
        dense=not ns.no_dense,
        progress=not ns.quiet,
        resume=ns.resume,
        overwrite=ns.overwrite,
        seeds=ns.seeds,
        threads=ns.threads,  # compare() applies the rule (auto: experiments.threads)
    )
    if not distributed.info().is_main:
        return
    print(result.markdown())
    print()
    print(result.verdict())
    print(f"written to {out}/compare.md and {out}/compare.json")


def _run_state(d: Path) -> str:
    if (d / "summary.json").is_file():
        return "done"
    if (d / DIVERGED).is_file():
        return "diverged"
    return "elsewhere" if claim_owner(d) is not None else "todo"


def _cmd_sweep(ns: argparse.Namespace) -> None:
    sweep = load_sweep(ns.config, trust_from(ns), max_cells=ns.max_cells, out=ns.out)
    sweep = with_trackers(sweep, ns.log, ns.log_every)
    out = ns.out or sweep.out
    _check_out_dir(out)
    configs = sweep.configs if ns.shard is None else shard_configs(sweep.configs, *ns.shard)
    for name in trackers_of(sweep):
        tracker_class(name)  # a missing package: one line now, not at the first run
    part = f" (shard {ns.shard[0]}/{ns.shard[1]}: {len(configs)} of them)" if ns.shard else ""
    print(f"sweep {sweep.name}: {len(sweep.configs)} runs in {out}{part}")
    if ns.dry_run:
        for cfg in configs:
            p = cfg.prune
            state = _run_state(run_dir(out, cfg))
            print(
                f"  {run_dir(out, cfg).name} {state:9} {cfg.data.dataset} {cfg.model.model} "
                f"{p.representation.kind} {p.method} {p.sparsity:g} seed {cfg.train.seed}"
            )
        return
    problems = GridProblems()
    _auto_threads(ns, configs)
    run_sweep(
        sweep,
        out,
        progress=not getattr(ns, "quiet", False),
        shard=ns.shard,
        wait=not ns.no_wait,
        problems=problems,
    )
    if not ns.no_report and distributed.info().is_main:
        try:
            report = write_report(out, trust_model_imports=trust_from(ns))
            print(f"report: {report}")
        except ValueError as e:  # e.g. nothing finished yet
            print(f"interspace sweep: no report: {e}", file=sys.stderr)
        else:
            done = sum((run_dir(out, c) / "summary.json").is_file() for c in sweep.configs)
            plots = sorted(Path(report).parent.glob("*.png"))
            text = {"report": Path(report).read_text()}
            log_group(trackers_of(sweep), TrackingScope(out, sweep.name), done, plots, text)
    if problems.diverged:
        print(f"{len(problems.diverged)} runs diverged (see diverged.json in each)")
    if problems.bad:
        raise ValueError(
            f"{len(problems.bad)} runs were skipped because a file of theirs is damaged "
            "(named above); the other runs are done"
        )


def _check_out_dir(out: Path) -> None:
    """An output folder that is a file, or lies under one, gets a one-line error."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == out else f"lies under {p}, which is a file"
            raise ValueError(f"output folder {out} {what}; choose another --out")


def _cmd_report(ns: argparse.Namespace) -> None:
    print(write_report(ns.dir, ns.out, ns.min_seeds, trust_from(ns)))


COMMANDS = {
    "train": _cmd_train,
    "compare": _cmd_compare,
    "sweep": _cmd_sweep,
    "report": _cmd_report,
    "bench": bench_cmd.run,
    "campaign": campaign_cmd.run,
}


def _os_error(e: OSError) -> str:
    """One line for an operating-system error, with what to do about the common ones."""
    where = f" {e.filename}" if e.filename else ""
    hint = {
        errno.ENOSPC: "free some space, then run the same command again (add --resume to train)",
        errno.EDQUOT: "free some space, then run the same command again (add --resume to train)",
        errno.EROFS: "the filesystem is read-only; choose a writable --out",
        errno.EACCES: "no permission; choose a folder you can write to",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "that is a folder, not a file",
    }.get(e.errno, "")
    text = (e.strerror or str(e).splitlines()[0] if str(e) else type(e).__name__) + where
    return text + (f"; {hint}" if hint else "")


#: Said after "stopped by signal N ..." outside a training step.
RESUME_HINTS = {
    "train": "run the same command with --resume to continue",
    "compare": "run the same command with --resume to continue",
    "sweep": "run the same command again to continue",
    "campaign": "run the same command again to continue",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    saved_threads = torch.get_num_threads()  # restored at the end: main() may run in-process
    threads = getattr(ns, "threads", None)
    if isinstance(threads, int):  # the user's count always wins ("auto": per command)
        if threads < 1:
            message = f"argument --threads: must be at least 1, got {threads}"
            _command_parser(parser, ns).error(message)
        torch.set_num_threads(threads)
    # ./mynets.py is found (as under python -m) for --model mynets:build and, with
    # --trust-model-imports, for a run that names it (report, bench, sweep)
    with StopOnSignals(RESUME_HINTS.get(ns.command, "")) as stops, model_imports(ns):
        try:
            try:
                if ns.command in RESUME_HINTS:  # commands that claim run folders
                    stale_after()  # INTERSPACE_CLAIM_TIMEOUT/_HEARTBEAT checked before any work
                distributed.init_from_env(getattr(ns, "device", "auto"))  # under torchrun: join
                with cli_option_names():  # run-folder errors name --resume, --overwrite
                    COMMANDS[ns.command](ns)
            finally:
                stops.disarm()  # the command is over: a later signal changes nothing
        except ValueError as e:  # includes DataError and TrainingError: one line, no traceback
            print(f"interspace {ns.command}: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # a full or read-only disk, a path that is a file, ...
            print(f"interspace {ns.command}: error: {_os_error(e)}", file=sys.stderr)
            return 1
        except TrainingStopped as e:  # SIGTERM, SIGINT or SIGHUP, at any point
            print(f"interspace {ns.command}: {e}", file=sys.stderr)
            return 128 + e.signum  # 143 for SIGTERM, 130 for SIGINT, 129 for SIGHUP
        except KeyboardInterrupt:
            print(f"interspace {ns.command}: interrupted", file=sys.stderr)
            return 128 + signal.SIGINT
        finally:
            if distributed.info().enabled:
                torch.distributed.destroy_process_group()
            torch.set_num_threads(saved_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
