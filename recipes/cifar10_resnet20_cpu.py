"""CIFAR-10 / ResNet-20 on CPU: the whole IP vs SP table of issue 14, resumable, N workers.

Runs every grid of recipes/cifar10_resnet20_cpu.yaml (same protocol, same folder) plus the
runs that prune a *trained* dense model: each seed's dense run of the sweep, pruned once by
global magnitude (IP: filter bases initialised by PCA of the trained filters), fine-tuned for
2 epochs at lr 0.01 (cosine, no warm-up), at 98/95% (after the first tier of the sweep) and 90%
(at the end).

    python recipes/cifar10_resnet20_cpu.py                  # one worker, 1 thread
    python recipes/cifar10_resnet20_cpu.py --workers 2      # two 1-thread workers
    python recipes/cifar10_resnet20_cpu.py --git-commit     # commit each finished run's files
    interspace report docs/results/cifar10_resnet20_cpu/runs

Workers take the highest-priority run nobody holds. They use the library's run-directory
claims (``.claim`` in each run folder, see ``interspace_pruning.foundations.claims``), so
any number of these processes, on any machines sharing the repository folder, split the
table between them; ``--shard i/n`` gives one process (e.g. one SLURM array task) a fixed
part (runs i, i+n, i+2n, ... of the order that ``--dry-run`` lists), and ``--runs 103-174``
a range of that order (say, the end of the table for a GPU while the CPUs work on its
start). Finished runs (``summary.json``) are skipped and interrupted ones continue from
their checkpoints, so stop it at any time (Ctrl-C / SIGTERM: each worker saves a checkpoint
first) and run the same command again. With --git-commit each finished run's small files
(config.json, summary.json, metrics.jsonl; checkpoints and models are *.pt and ignored by
git) are committed, so a fresh clone continues where this one stopped. Run it from the
repository root: run folders and the fine-tuning runs' --init-from paths are relative.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from interspace_pruning import Representation
from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.experiments.config import config_from_dict
from interspace_pruning.experiments.grid import canonical, expand, run_dir
from interspace_pruning.experiments.run import run
from interspace_pruning.experiments.runfiles import DIVERGED
from interspace_pruning.experiments.sweep import base_config, load_sweep, parse_shard, shard_configs
from interspace_pruning.foundations.claims import Claim, RunClaimedError, try_claim
from interspace_pruning.foundations.hparams import config_hash
from interspace_pruning.foundations.io import atomic_write_json
from interspace_pruning.training.device import cpu_model
from interspace_pruning.training.loop import TrainingStopped

RECIPE = Path(__file__).with_suffix(".yaml")
#: The fine-tuning runs at 98/95% go after this many grids of the recipe (the first tier).
FINETUNE_AFTER_GRIDS = 3
FINETUNE = {"epochs": 2, "lr": 0.01, "warmup_epochs": 0.0}
#: Where a dense run is re-trained when its model.pt is missing (ignored by git).
SCRATCH = Path(__file__).resolve().parents[1] / "runs" / "restore"


def finetune_configs(dense_runs: list[RunConfig], out: Path, sparsities) -> list[RunConfig]:
    """Prune each trained dense run once by magnitude and fine-tune it, SP and IP."""
    configs = []
    for sparsity in sparsities:
        for dense in dense_runs:
            for rep in ("sp", "ip"):
                cfg = dataclasses.replace(
                    dense,
                    model=dataclasses.replace(dense.model, init_from=str(run_dir(out, dense))),
                    prune=PruneConfig(
                        representation=Representation(rep, basis="pca"),
                        method="magnitude",
                        sparsity=sparsity,
                    ),
                    train=dataclasses.replace(dense.train, **FINETUNE),
                )
                configs.append(canonical(cfg))
    return configs


def ordered_configs(recipe: Path, out: Path) -> list[RunConfig]:
    """The recipe's runs in its order, with the fine-tuning runs placed by priority."""
    sweep = load_sweep(recipe)
    spec = yaml.safe_load(recipe.read_text())
    base = base_config(spec.get("base"))
    first = {config_hash(c) for g in spec["grids"][:FINETUNE_AFTER_GRIDS] for c in expand(base, g)}
    n_first = sum(config_hash(c) in first for c in sweep.configs)
    dense = [c for c in sweep.configs if c.prune.representation.is_dense]
    return (
        sweep.configs[:n_first]
        + finetune_configs(dense, out, [0.98, 0.95])
        + sweep.configs[n_first:]
        + finetune_configs(dense, out, [0.9])
    )


def claim(run_folder: Path) -> Claim | None:
    """The run folder's claim, or None while another live process (on any host) holds it."""
    try:
        return try_claim(run_folder)
    except RunClaimedError:
        return None


def git_commit(out: Path, what: str) -> None:
    """Commit the small files (json, jsonl; never *.pt) of every finished run under ``out``,
    so that runs whose commit failed before are picked up too; failures are reported only."""
    files = sorted(
        str(p)
        for summary in out.glob("*/summary.json")
        for p in summary.parent.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl")
    )
    # one commit at a time from this clone (git's own index.lock would fail the others)
    lock = subprocess.run(
        ["git", "rev-parse", "--git-path", "interspace-sweep.lock"], capture_output=True, text=True
    )
    if lock.returncode:
        print(f"git failed ({lock.stderr.strip()[:200]}); files stay on disk", flush=True)
        return
    with open(lock.stdout.strip(), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for cmd in (
            ["git", "add", "--", *files],
            ["git", "commit", "-q", "-m", what, "--", *files],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode and "nothing" not in done.stdout + done.stderr:
                print(f"git failed ({done.stderr.strip()[:200]}); files stay on disk", flush=True)
                return


def restore_dense_model(dense_dir: Path, scratch: Path) -> bool:
    """A finished dense run without its (uncommitted) model.pt: train it again in
    ``scratch/<hash>`` (resumable, like any run) and put its model.pt back. False if another
    process is already doing it (it holds the dense run's claim meanwhile).

    The same configuration on the same CPU gives the same weights bitwise; another CPU (other
    kernels) or a run that was resumed with another memory layout agrees only up to rounding,
    so ``model_restored.json`` records the re-trained model's accuracy beside the committed one
    (and each fine-tuning run's summary has the sha256 of the model.pt it started from).
    """
    held = claim(dense_dir)
    if held is None:
        return False
    with held:
        if (dense_dir / "model.pt").is_file():  # restored meanwhile by another process
            return True
        cfg = config_from_dict(json.loads((dense_dir / "config.json").read_text()))
        where = scratch / config_hash(cfg)
        print(
            f"re-training {dense_dir} in {where} for its model.pt (fine-tuning needs it)",
            flush=True,
        )
        summary = run(cfg, where, progress=False, resume=True).summary
        shutil.copy2(where / "model.pt", dense_dir / "model.pt.tmp")
        os.replace(dense_dir / "model.pt.tmp", dense_dir / "model.pt")
        committed = json.loads((dense_dir / "summary.json").read_text())
        atomic_write_json(
            dense_dir / "model_restored.json",
            {
                "why": "model.pt is not committed; fine-tuning runs start from this re-training",
                "cpu": cpu_model(),
                "torch": torch.__version__,
                "test_acc_committed": committed.get("test_acc"),
                "test_acc_retrained": summary.get("test_acc"),
            },
        )
        shutil.rmtree(where, ignore_errors=True)
        print(
            f"restored {dense_dir}/model.pt: test_acc {summary.get('test_acc')} "
            f"(committed run: {committed.get('test_acc')})",
            flush=True,
        )
    return True


def describe(cfg: RunConfig) -> str:
    p = cfg.prune
    if p.representation.is_dense:
        return f"dense seed {cfg.train.seed}"
    trained = " trained+FT" if cfg.model.init_from else ""
    return f"{p.representation.kind} {p.method}{trained} {p.sparsity:g} seed {cfg.train.seed}"


class _Worker:
    """One worker's loop: the highest-priority run that is neither finished nor held, until
    none is left. Fine-tuning runs wait for their dense run: one in another shard is trained
    here unless another process is training it, and one that failed drops its fine-tuning."""

    def __init__(self, worker, configs, out, commit, order=None) -> None:
        self.name, self.out, self.commit = f"[worker {worker}]", out, commit
        self.order = order or configs
        self.pending = list(configs)
        self.failed: set[Path] = set()
        self.announced: set[Path] = set()

    def say(self, text: str) -> None:
        print(f"{self.name} {text}", flush=True)

    def drop(self, cfg: RunConfig, why: str) -> None:
        self.say(f"skipped {describe(cfg)}: {why}")
        self.pending.remove(cfg)

    def blocked(self, cfg: RunConfig) -> bool | None:
        """For a fine-tuning run: True while it must wait, None once it was dropped or its
        dense run was queued here, False when it can start."""
        dense_dir = Path(cfg.model.init_from)
        if not (dense_dir / "summary.json").is_file():
            if dense_dir in self.failed or (dense_dir / DIVERGED).is_file():
                return self.drop(cfg, f"its dense run {dense_dir} failed")
            dense = next((c for c in self.order if run_dir(self.out, c) == dense_dir), None)
            if dense is None:
                return self.drop(cfg, f"{dense_dir} is not a run of this table")
            if dense not in self.pending:  # another shard's: train it here unless held
                self.pending.insert(0, dense)
                return None
            if dense_dir not in self.announced:
                self.announced.add(dense_dir)
                self.say(f"{describe(cfg)} waits for its dense run {dense_dir}")
            return True
        if (dense_dir / "model.pt").is_file():
            return False
        try:
            return not restore_dense_model(dense_dir, SCRATCH)
        except Exception as e:  # noqa: BLE001 - one failed run must not stop the rest
            self.failed.add(dense_dir)
            self.say(f"FAILED re-training {dense_dir}: {e!r}")
            return None

    def train(self, cfg: RunConfig, d: Path) -> None:
        i = self.order.index(cfg) + 1
        self.say(f"[{i}/{len(self.order)}] {describe(cfg)} -> {d}")
        t0 = time.perf_counter()
        try:
            summary = run(cfg, d, progress=False, resume=True).summary
        except Exception as e:  # noqa: BLE001 - one failed run must not stop the rest
            self.failed.add(d)
            self.say(f"FAILED {describe(cfg)}: {e!r}")
            return
        took = time.perf_counter() - t0
        self.say(f"done {describe(cfg)}: test_acc {summary['test_acc']:.4f} in {took:.0f} s")
        if self.commit:
            git_commit(self.out, f"cifar10-resnet20-cpu: {describe(cfg)}")

    def step(self) -> bool | None:
        """Train (or drop) one run: True; only runs that wait: None; nothing left: False."""
        waiting = False
        for cfg in list(self.pending):
            d = run_dir(self.out, cfg)
            if (d / "summary.json").is_file():
                self.pending.remove(cfg)
                continue
            if cfg.model.init_from:
                blocked = self.blocked(cfg)
                if blocked is None:
                    return True  # the pending list changed: start again from the top
                if blocked:
                    waiting = True
                    continue
            held = claim(d)
            if held is None:
                continue  # another process trains it
            with held:
                if not (d / "summary.json").is_file():  # finished between check and claim
                    self.train(cfg, d)
            self.pending.remove(cfg)
            return True
        return None if waiting else False

    def loop(self) -> None:
        while self.pending:
            progressed = self.step()
            if progressed is False:
                return  # what is left is being trained by other processes
            if progressed is None:
                time.sleep(60)  # fine-tuning runs wait for their dense runs


def work(worker: int, configs: list[RunConfig], out: Path, commit: bool, order=None) -> None:
    """Train ``configs`` (a part of ``order``, the whole table) in priority order."""
    _Worker(worker, configs, out, commit, order).loop()


def _worker_main(worker, configs, out, commit, threads, order) -> None:
    torch.set_num_threads(threads)

    def stop(signum, frame):  # between runs; while training, train() checkpoints first
        raise TrainingStopped(f"stopped by signal {signum} between runs", signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        work(worker, configs, out, commit, order)
    except TrainingStopped as e:
        print(f"[worker {worker}] {e}", flush=True)


def parse_runs(text: str) -> list[int]:
    """``"103-120,150"`` -> run numbers 103..120 and 150 (1-based, as ``--dry-run`` lists)."""
    numbers: list[int] = []
    for part in str(text).split(","):
        first, sep, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last) if sep else int(first)
        except ValueError:
            lo = hi = 0
        if lo < 1 or hi < lo:
            raise argparse.ArgumentTypeError(
                f"--runs takes run numbers and ranges such as 103-120,150 (1-based, as "
                f"--dry-run lists them), got {text!r}"
            )
        numbers.extend(range(lo, hi + 1))
    return numbers


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipe", type=Path, default=RECIPE)
    p.add_argument("--out", type=Path, default=None, help="default: the recipe's out")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker")
    p.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        help="train only shard I of N (1-based: runs I, I+N, ... of the --dry-run order)",
    )
    p.add_argument(
        "--runs",
        type=parse_runs,
        default=None,
        help="train only these runs, e.g. 103-174 (numbers of the --dry-run order)",
    )
    p.add_argument("--git-commit", action="store_true", help="commit each finished run's files")
    p.add_argument("--dry-run", action="store_true", help="list the runs in order, train nothing")
    args = p.parse_args(argv)
    out = args.out or load_sweep(args.recipe).out
    order = ordered_configs(args.recipe, out)
    configs = order
    if args.runs is not None:
        if max(args.runs) > len(order):
            p.error(f"--runs: the table has {len(order)} runs, not {max(args.runs)}")
        chosen = set(args.runs)
        configs = [c for i, c in enumerate(order, 1) if i in chosen]
    if args.shard is not None:
        configs = shard_configs(configs, *args.shard)
    if args.dry_run:
        for cfg in configs:
            done = (run_dir(out, cfg) / "summary.json").is_file()
            i = order.index(cfg) + 1
            print(f"{i:4d} {'done' if done else '    '} {describe(cfg)} -> {run_dir(out, cfg)}")
        return
    out.mkdir(parents=True, exist_ok=True)
    finished = sum((run_dir(out, c) / "summary.json").is_file() for c in configs)
    part = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    print(
        f"{len(configs)} runs{part}, {finished} finished, {args.workers} worker(s) -> {out}",
        flush=True,
    )
    procs = [
        mp.get_context("fork").Process(
            target=_worker_main,
            args=(w, configs, out, args.git_commit, args.threads, order),
        )
        for w in range(args.workers)
    ]
    for proc in procs:
        proc.start()
        time.sleep(5 if args.workers <= 4 else 1)  # staggered: workers pick different runs

    def stop(signum, frame):  # workers checkpoint on SIGTERM, then exit
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C reaches the workers from the terminal itself: forwarding it too would be their
    # second signal, which stops them without a checkpoint
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for proc in procs:
        proc.join()
    finished = sum((run_dir(out, c) / "summary.json").is_file() for c in configs)
    print(f"{finished}/{len(configs)} runs finished in {out}", flush=True)
    sys.exit(0 if finished == len(configs) else 1)


if __name__ == "__main__":
    main()
