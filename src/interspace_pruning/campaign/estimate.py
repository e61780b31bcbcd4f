"""How long a run takes on this machine, before it starts.

A run's cost is mostly its training steps, so the estimator times a few real steps of the
run's own model (its representation, precision and layout, this worker's thread count,
while the other workers train: the contention the run will see) and scales them to the
run's epochs, plus the evaluations and a fixed setup cost. Runs that finish on this machine
teach it a correction: the median ratio of real to estimated time. Both are kept per kind
of machine in ``runs/campaign/<machine>.json`` (never committed: they describe a machine).
"""

from __future__ import annotations

import dataclasses
import fcntl
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..experiments.config import RunConfig
from ..experiments.run import prepare_run
from ..experiments.run_setup import load_data
from ..experiments.stretches import epochs_kept
from ..foundations.io import CorruptFileError, atomic_write_json, open_for_append, read_json
from ..training import device as dev
from .queue import QueuedRun

#: Seconds a run spends outside its epochs: loading data, pruning, writing its files.
SETUP_SECONDS = 30.0
#: An evaluation image costs about this fraction of a training image (forward only).
EVAL_COST = 0.35
#: Estimates are stretched by this much on top of the learned correction.
SAFETY = 1.1
TIMED_STEPS, WARMUP_STEPS = 4, 2


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "machine"


class Estimator:
    """Seconds-per-run estimates for this machine (``machine``: its kind). The state on disk
    is shared by the workers: each change is made under a lock on the latest copy."""

    def __init__(self, folder: Path, machine: str, threads: int) -> None:
        self.path = Path(folder) / f"{_slug(machine)}.json"
        self.machine, self.threads = machine, threads
        self._data: dict = {}
        self.state = self._read()

    def _read(self) -> dict:
        try:  # bounded, a regular file only: a planted FIFO or huge file must not hang us
            state = read_json(self.path, dict)
        except CorruptFileError:
            state = {}
        state = state if isinstance(state, dict) else {}
        for key, empty in (("step_seconds", {}), ("ratios", []), ("sizes", {})):
            if not isinstance(state.get(key), type(empty)):
                state[key] = empty
        return state

    def _update(self, change: Callable[[dict], object]) -> None:
        """Apply ``change`` to the latest state on disk and keep the result."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_for_append(self.path.with_suffix(".lock")) as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            self.state = self._read()
            change(self.state)
            atomic_write_json(self.path, self.state)

    def _dataset(self, run: QueuedRun):
        key = repr(run.cfg.data)
        if key not in self._data:
            self._data = {key: load_data(run.cfg.data)}  # one dataset in memory at a time
        return self._data[key]

    def is_timed(self, run: QueuedRun) -> bool:
        """Whether this machine has timed ``run``'s kind of step and sized its data, so
        :meth:`seconds` answers without training anything."""
        return (
            self._step_key(run, self.threads) in self.state["step_seconds"]
            and repr(run.cfg.data) in self.state["sizes"]
        )

    @staticmethod
    def _step_key(run: QueuedRun, threads: int) -> str:
        c = run.cfg
        return (
            f"{c.data.dataset}/{c.data.image_size}/{c.model.model}/{c.prune.representation.kind}/"
            f"{c.train.precision}/{c.train.channels_last}/{c.train.batch_size}/{threads}t"
        )

    def step_seconds(self, run: QueuedRun) -> float:
        """Seconds per training step of ``run`` here (timed once per kind of step, by
        whichever worker needs it first)."""
        key = self._step_key(run, self.threads)
        known = self._read()["step_seconds"].get(key)
        if isinstance(known, (int, float)) and known > 0:
            return float(known)
        seconds = self._time_steps(run)
        self._update(lambda state: state["step_seconds"].setdefault(key, seconds))
        return float(self.state["step_seconds"][key])

    def _time_steps(self, run: QueuedRun) -> float:
        cfg = _timing_config(run.cfg)
        dataset = self._dataset(run)
        where = dev.Placement.of(cfg.train)
        rng = torch.get_rng_state()
        try:
            model, _ = prepare_run(cfg, dataset, placement=where)
        finally:
            torch.set_rng_state(rng)  # timing must not move the run's own random draws
        data = dev.place(model, dataset, where)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        batches = data.train_batches(cfg.train.batch_size, torch.Generator().manual_seed(0))
        times = []
        for i, (x, y) in zip(range(TIMED_STEPS + WARMUP_STEPS), batches, strict=False):
            x, y = dev.to_device(x, y, where.device, where.channels_last)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with dev.autocast(where.device, where.precision):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if where.device.type == "cuda":
                torch.cuda.synchronize(where.device)
            if i >= WARMUP_STEPS:
                times.append(time.perf_counter() - t0)
        return statistics.median(times) if times else 1.0

    def sizes(self, run: QueuedRun) -> tuple[int, int]:
        """Training and test images of ``run``'s data (loaded once per data setting)."""
        key = repr(run.cfg.data)
        known = self.state["sizes"].get(key)
        if not (isinstance(known, list) and len(known) == 2):
            dataset = self._dataset(run)
            known = [len(dataset.train_y), len(dataset.test_y)]
            self._update(lambda state: state["sizes"].__setitem__(key, known))
        return int(known[0]), int(known[1])

    def raw_seconds(self, run: QueuedRun) -> float:
        """The whole run's seconds from the timed step alone (no correction)."""
        n_train, n_test = self.sizes(run)
        t = run.cfg.train
        step = self.step_seconds(run)
        steps = (n_train // t.batch_size) * t.epochs
        per_image = step / t.batch_size
        evals = t.evaluations() * n_test + min(n_train, 10_000)
        trainings = 1
        if run.cfg.prune.method == "imp" and not run.cfg.prune.representation.is_dense:
            trainings = (run.cfg.options["imp"].rounds or 1) + 1
        return trainings * (steps * step + evals * per_image * EVAL_COST) + SETUP_SECONDS

    def correction(self) -> float:
        """The median ratio of real to estimated time of this machine's last 20 runs."""
        ratios = [r for r in self._read()["ratios"] if isinstance(r, (int, float)) and r > 0]
        return statistics.median(ratios[-20:]) if ratios else 1.0

    def seconds(self, run: QueuedRun) -> float:
        """Estimated seconds to finish ``run`` here (what is left of it, if resumed)."""
        left = 1.0 - epochs_kept(run.dir) / max(1, run.cfg.train.epochs)
        return SAFETY * self.correction() * self.raw_seconds(run) * max(left, 0.05)

    def learn(self, run: QueuedRun, estimated_raw: float, took: float) -> None:
        """A run finished in ``took`` seconds where ``estimated_raw`` was expected."""
        if estimated_raw > 0 and took > 0:
            ratio = round(took / estimated_raw, 4)
            self._update(lambda state: state.__setitem__("ratios", [*state["ratios"], ratio][-50:]))


def _timing_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` as a run that prunes once (IMP's rounds are timed as magnitude pruning)."""
    if cfg.prune.method != "imp":
        return cfg
    return dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, method="magnitude"))
