"""The campaign loop: workers on this machine take the queue's runs until the deadline.

Each worker (a process with ``threads`` torch threads, at ``nice`` priority so that the
machine's other work comes first; :mod:`.priority` says why its session's scheduler group
gets that priority too) takes the highest-priority run that

- is not finished, diverged or being trained by another process (run-folder claims);
- trains in a precision that is fast here (bf16 needs AVX512-BF16 or AMX on a CPU; on other
  CPUs such runs are left for a machine that has it, and the fp32 tables go on);
- belongs to a group whose runs trained on no other kind of machine (a group, see
  :mod:`.queue`, trains on one kind from start to end);
- fits: its estimated time (:mod:`.estimate`) ends before the deadline less ``margin``.

At the deadline less ``margin`` a run still training gets SIGTERM from its worker: it writes
its checkpoint at the end of the step, which is committed (:mod:`.gitsync`) for the next
machine of the same kind to continue. So at most the steps since the last checkpoint are
lost when a machine is stopped without warning, and nothing when the deadline is honest.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import DataError
from ..experiments.grid import check_recorded, not_a_run_folder
from ..experiments.results import keep_sparse_model
from ..experiments.run import run
from ..experiments.runfiles import DIVERGED, SUMMARY, read_diverged, read_summary
from ..experiments.stretches import (
    STRETCHES,
    epochs_done,
    epochs_kept,
    machine_kinds,
    read_stretches,
    starts_over,
)
from ..foundations.claims import Claim, RunClaimedError, claim_owner, try_claim
from ..foundations.io import CorruptFileError, atomic_write_json, read_json
from ..training import device as dev
from ..training.signals import TrainingStopped
from .estimate import Estimator
from .gitsync import (
    checkpoint_goes_through_git,
    commit_run,
    resume_files,
    too_large_to_commit,
)
from .priority import lower_session_priority
from .queue import Queue, QueuedRun

#: Where a machine keeps its campaign state (step timings, workers, pauses; never committed).
STATE_DIR = Path("runs") / "campaign"


@dataclass
class CampaignOptions:
    """How a campaign runs on this machine."""

    deadline: float  # Unix time by which every worker has stopped and committed
    workers: int = 2
    threads: int = 1  # torch threads per worker
    nice: int = 10  # added to each worker's niceness: interactive work on the machine first
    commit: bool = True  # commit each finished run, and checkpoints at a stop
    margin: float = 180.0  # seconds before the deadline at which training stops
    #: Use the time left in queue order: a run that does not fit starts anyway, before the
    #: later runs that fit, when at least ``fill_min`` is left and its checkpoint goes through
    #: git; one whose checkpoint does not starts only when nothing fits. Checkpointed at
    #: the stop, continued by the next machine of its kind.
    fill: bool = False
    fill_min: float = 10 * 60.0
    idle: bool = True  # workers at SCHED_IDLE (Linux): they run only on otherwise idle cores
    #: The longest a machine runs (a job's limit). A run estimated longer than this can never
    #: fit before a deadline: it starts when at least ``min_stretch`` is left, and continues
    #: from its committed checkpoint on the next machine of its kind.
    session: float = 3 * 3600.0
    min_stretch: float = 30 * 60.0
    state_dir: Path = STATE_DIR

    @property
    def stop_at(self) -> float:
        return self.deadline - self.margin


def here() -> str:
    """This machine's kind (see :func:`..training.device.machine_kind`)."""
    return dev.machine_kind(dev.resolve_device("auto"))


def run_machines(run_dir: Path) -> set[str]:
    """The kinds of machine that trained (part of) the run in ``run_dir``: its summary's
    (see :func:`..experiments.stretches.machine_kinds`), else its ``stretches.json``'s.
    Every file is read bounded (a received folder); a damaged ``stretches.json`` raises a
    one-line :class:`CorruptFileError`: where the run trained is then unknown."""
    try:
        summary = read_json(run_dir / SUMMARY)
    except ValueError:  # missing, damaged, a FIFO, a link to /dev/zero: not finished
        summary = None
    if isinstance(summary, dict):
        return set(machine_kinds(summary))
    if starts_over(run_dir):  # its checkpoint is gone: the recorded stretches are discarded
        return set()
    return {str(s["machine"]) for s in read_stretches(run_dir) if s.get("machine")}


def _group_machines(group: list[QueuedRun]) -> tuple[set[str], str | None]:
    """The machine kinds ``group`` trained on, and why they are unknown (None: known)."""
    kinds: set[str] = set()
    for r in group:
        try:
            kinds |= run_machines(r.dir)
        except CorruptFileError as e:
            return kinds, f"where it trained is unknown: {e}"
    return kinds, None


def result_of(run: QueuedRun) -> str | None:
    """``done`` or ``diverged`` where ``run``'s folder holds its result, None where it holds
    none. The file is read bounded and checked to be this run's: a ``summary.json`` copied
    from another run's folder raises a one-line :class:`CorruptFileError` instead of
    counting the run as done (it would then never train, and the report would refuse it)."""
    if (run.dir / SUMMARY).is_file():
        read_summary(run.dir / SUMMARY, run.cfg)
        return "done"
    if (run.dir / DIVERGED).is_file():
        read_diverged(run.dir / DIVERGED, run.cfg)
        return "diverged"
    return None


def why_not(run: QueuedRun, group: list[QueuedRun], machine: str) -> str | None:
    """Why ``run`` cannot train on this machine now (None: it can)."""
    d = run.dir
    try:  # a received folder must not make this run write elsewhere, nor overwrite another
        junk = not_a_run_folder(d) or check_recorded(d, run.cfg)
        result = None if junk else result_of(run)
    except ValueError as e:  # CorruptFileError: a file damaged or of another run
        junk = e
    if junk is not None:
        return f"not trained: {junk}"
    if result is not None:
        return result
    device = dev.resolve_device(run.cfg.train.device)
    slow = sorted(
        {
            r.cfg.train.precision
            for r in group
            if not dev.precision_is_native(
                dev.resolve_precision(r.cfg.train.precision, device), device
            )
        }
    )
    if slow:
        return f"{'/'.join(slow)} is slow on this machine ({machine}); left to one that has it"
    kinds, unknown = _group_machines(group)
    if unknown:
        return unknown
    elsewhere = sorted(kinds - {machine})
    if elsewhere:
        return f"its group trained on {elsewhere[0]}; it continues there"
    if claim_owner(d) is not None:
        return "being trained by another process"
    return None


def state_of(run: QueuedRun) -> str:
    """``done``, ``diverged``, ``partial (E/N epochs)``, ``todo``, or ``unusable result``
    (a result file that is damaged or another run's: :func:`why_not` says which)."""
    try:
        result = result_of(run)
    except ValueError:
        return "unusable result"
    if result is not None:
        return result
    done = epochs_kept(run.dir)  # a run whose checkpoint is gone starts over
    if done or resume_files(run.dir):
        return f"partial ({done}/{run.cfg.train.epochs} epochs)"
    return "todo"


def left_elsewhere(queue: Queue, machine: str) -> str | None:
    """One line on the unfinished runs this machine does not train, counted by reason (a
    precision that is slow here, a group that began on another kind, a folder that cannot
    hold the run); None if none."""
    groups = queue.groups()
    return _not_trained_line(why_not(r, groups[r.group], machine) for r in queue.runs)


def _not_trained_line(reasons: Iterable[str | None]) -> str | None:
    """:func:`left_elsewhere`'s line from each run's :func:`why_not`."""
    counts: dict[str, int] = {}
    for reason in reasons:
        if reason and reason not in ("done", "diverged", "being trained by another process"):
            counts[reason] = counts.get(reason, 0) + 1
    if not counts:
        return None
    counted = "; ".join(f"{n}: {why}" for why, n in sorted(counts.items(), key=lambda x: -x[1]))
    return f"not trained here: {sum(counts.values())} runs ({counted})"


def status_lines(queue: Queue, estimator: Estimator | None = None) -> list[str]:
    """One line per run of the queue: its state, where it trained, why it cannot train here
    or (where this machine has timed that kind of step) its estimated time here; then the
    totals: runs done, and the estimated one-worker hours left for the runs timed here."""
    machine = here()
    groups = queue.groups()
    lines, reasons = [], []
    left, untimed, done = 0.0, 0, 0
    for i, r in enumerate(queue.runs, 1):
        state = state_of(r)  # reads and checks the result: once a run
        done += state == "done"
        note = ""
        reason = why_not(r, groups[r.group], machine)  # also counted in the last lines
        reasons.append(reason)
        if state not in ("done", "diverged"):
            timed = estimator is not None and estimator.is_timed(r)
            if reason:
                note = f" [{reason}]"
            elif timed:
                seconds = estimator.seconds(r)
                left += seconds
                note = f" [~{seconds / 60:.0f} min here]"
            else:
                untimed += 1
        try:
            where = ", ".join(sorted(run_machines(r.dir)))
        except CorruptFileError:  # why_not says so in the note
            where = "machines unknown"
        if state.startswith("partial") and (size := too_large_to_commit(resume_files(r.dir))):
            note += f" [its {size / 1e6:.0f} MB checkpoint continues on this checkout only]"
        lines.append(
            f"{i:4d} {state:22} {r.describe()} -> {r.dir}" + (f" ({where})" if where else "") + note
        )
    lines.append(f"{done}/{len(queue.runs)} runs done; this machine: {machine}")
    if elsewhere := _not_trained_line(reasons):
        lines.append(elsewhere)
    if estimator is not None:
        lines.append(
            f"runs that can train here and whose steps were timed here: ~{left / 3600:.1f} "
            f"one-worker hours left; {untimed} more not timed here yet"
        )
    return lines


class _Worker:
    def __init__(self, name: str, queue: Queue, opts: CampaignOptions) -> None:
        self.name, self.queue, self.opts = name, queue, opts
        self.machine = here()
        self.estimator = Estimator(opts.state_dir, self.machine, opts.threads)
        self.groups = queue.groups()
        self.skipped: set[Path] = set()  # runs that could not be set up here
        self.missing_data: set[str] = set()  # data settings that could not be loaded here

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} [{self.name}] {text}", flush=True)

    def _claim(self, r: QueuedRun) -> Claim | None:
        try:
            return try_claim(r.dir)
        except RunClaimedError:
            return None

    def _fills_first(self, r: QueuedRun, left: float) -> bool:
        """With ``fill``: whether ``r``, which does not fit, starts before the later runs
        that do. It does when at least ``fill_min`` is left and its checkpoint survives this
        machine (committed through git, or ``commit`` is off and this checkout keeps it);
        a run whose checkpoint is too large for git is started only when nothing fits."""
        if not self.opts.fill or left < self.opts.fill_min:
            return False
        return not self.opts.commit or checkpoint_goes_through_git(r.cfg)

    def _start_unfit(
        self, r: QueuedRun, est: float, why: str
    ) -> tuple[QueuedRun, Claim, float] | None:
        """Claim ``r``, which does not fit, to train until the stop (``fill``); None if
        another process holds it."""
        held = self._claim(r)
        if held is None:
            return None
        self.say(
            f"{r.describe()} needs ~{est / 60:.0f} min, more than is left: {why}, "
            "checkpointed at the stop"
        )
        return r, held, est

    def pick(self) -> tuple[QueuedRun, Claim, float] | None:
        """The highest-priority run that can train here and fits, claimed."""
        left = self.opts.stop_at - time.time()
        unfit: list[tuple[QueuedRun, float]] = []
        for r in self.queue.runs:
            if r.dir in self.skipped or why_not(r, self.groups[r.group], self.machine):
                continue
            data = repr(r.cfg.data)
            if data in self.missing_data:
                self.skipped.add(r.dir)
                continue
            try:
                est = self.estimator.seconds(r)
            except DataError as e:  # every run of that data would fail alike: say it once
                self.say(f"skipping the runs of {r.table} on {r.cfg.data.dataset}: {e}")
                self.missing_data.add(data)
                self.skipped.add(r.dir)
                continue
            except Exception as e:  # noqa: BLE001 - a run that cannot even start is skipped
                self.say(f"FAILED to set up {r.describe()}: {e}")
                self.skipped.add(r.dir)
                continue
            spans_machines = est > self.opts.session - self.opts.margin
            if est > left and not (spans_machines and left >= self.opts.min_stretch):
                why = "started before the later runs that fit (--fill)"
                if self._fills_first(r, left) and (picked := self._start_unfit(r, est, why)):
                    return picked
                unfit.append((r, est))
                continue
            if est > left:
                self.say(
                    f"{r.describe()} needs ~{est / 60:.0f} min, longer than any machine's "
                    f"{self.opts.session / 3600:g} h: it trains in stretches"
                )
            held = self._claim(r)
            if held is not None:
                return r, held, est
        if self.opts.fill:
            for r, est in unfit:
                if picked := self._start_unfit(r, est, "started to fill the time"):
                    return picked
        if unfit:
            r, est = unfit[0]
            self.say(
                f"nothing left that fits in {max(0, left) / 60:.0f} min "
                f"(next: {r.describe()}, ~{est / 60:.0f} min)"
            )
        return None

    def loop(self) -> None:
        while time.time() < self.opts.stop_at:
            picked = self.pick()
            if picked is None:
                return
            self.train(*picked)

    def train(self, r: QueuedRun, held: Claim, est: float) -> None:
        left_fraction = 1.0 - epochs_kept(r.dir) / max(1, r.cfg.train.epochs)
        resumed = left_fraction < 1.0 or bool(resume_files(r.dir))
        raw = self.estimator.raw_seconds(r) * left_fraction
        self.say(
            f"{'continue' if resumed else 'start'} {r.describe()} -> {r.dir} (~{est / 60:.0f} min)"
        )
        pid = os.getpid()
        timer = threading.Timer(
            max(0.0, self.opts.stop_at - time.time()), os.kill, (pid, signal.SIGTERM)
        )
        timer.daemon = True
        timer.start()
        t0 = time.time()
        try:
            with held:
                summary = run(r.cfg, r.dir, progress=False, resume=True).summary
        except TrainingStopped:
            timer.cancel()
            kept = bool(resume_files(r.dir))
            self.say(
                f"stopped {r.describe()} at epoch {epochs_done(r.dir)}/{r.cfg.train.epochs}"
                + (": checkpoint kept" if kept else ": no checkpoint yet")
            )
            if self.opts.commit and kept and (r.dir / STRETCHES).is_file():
                commit_run(r.dir, f"campaign: checkpoint of {r.describe()}", checkpoint=True)
            raise
        except Exception as e:  # noqa: BLE001 - one failed run must not stop the rest
            self.skipped.add(r.dir)
            self.say(f"FAILED {r.describe()}: {e!r}"[:400])
            return
        finally:
            timer.cancel()
        took = time.time() - t0 - paused_between(self.opts.state_dir, t0, time.time())
        if not resumed:
            self.estimator.learn(r, raw, took)
        self.say(
            f"done {r.describe()}: test_acc {summary['test_acc']:.4f} in {took / 60:.1f} min "
            f"(estimated {est / 60:.0f})"
        )
        if r.keep_model:
            try:
                kept = keep_sparse_model(r.cfg, r.dir, summary)
            except (ValueError, OSError) as e:  # the run stands; only its sparse copy is missing
                self.say(f"no model.isp for {r.describe()}: {e}"[:400])
            else:
                if kept is not None:
                    self.say(f"kept {kept} ({kept.stat().st_size / 2**20:.1f} MB)")
        if self.opts.commit:
            commit_run(r.dir, f"campaign: {r.describe()}")


def _worker_main(index: int, queue: Queue, opts: CampaignOptions) -> None:
    os.nice(opts.nice)
    if opts.idle and hasattr(os, "SCHED_IDLE"):  # run only when a core has nothing else
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    torch.set_num_threads(opts.threads)

    def stop(signum, frame):  # between runs; inside training, train() checkpoints first
        raise TrainingStopped(f"stopped by signal {signum} between runs", signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker = _Worker(f"worker {index}", queue, opts)
    try:
        worker.loop()
    except TrainingStopped as e:
        worker.say(str(e))
    worker.say(
        "stopped: nothing left that fits before the deadline"
        if time.time() < opts.stop_at
        else "stopped: the deadline came"
    )


def run_campaign(queue: Queue, opts: CampaignOptions) -> int:
    """Run the queue with ``opts.workers`` processes until nothing fits before the deadline;
    the number of runs finished at the end."""
    if opts.workers < 1 or opts.threads < 1:
        raise ValueError("--workers and --threads must be at least 1")
    left = opts.stop_at - time.time()
    if left <= 0:
        raise ValueError(
            f"the deadline is {-left / 60:.0f} min too close (training stops --margin "
            f"{opts.margin:.0f} s before it); give a later --deadline"
        )
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    for r in queue.runs:  # each worker's first scan must not be the one that makes folders
        r.out.mkdir(parents=True, exist_ok=True)
    # Before the workers fork: they share the session, so its scheduler group is theirs too.
    group = lower_session_priority(opts.nice)
    print(
        f"campaign {queue.name}: {len(queue.runs)} runs, {opts.workers} worker(s) x "
        f"{opts.threads} thread(s) at nice +{opts.nice}{f' ({group})' if group else ''}, "
        f"on {here()}; training stops at "
        f"{time.strftime('%H:%M:%S', time.localtime(opts.stop_at))}",
        flush=True,
    )
    if elsewhere := left_elsewhere(queue, here()):
        print(elsewhere, flush=True)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker_main, args=(w, queue, opts)) for w in range(opts.workers)]
    for i, proc in enumerate(procs):
        if i:
            time.sleep(10 if opts.workers <= 4 else 1)  # staggered: they claim different runs
        proc.start()
    write_workers(opts.state_dir, [p.pid for p in procs])

    def forward(signum, frame):  # workers checkpoint on SIGTERM, commit, then exit
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join(max(1.0, opts.deadline + 60 - time.time()))
    for proc in procs:  # past the deadline: a worker that hangs must not outlive it
        if proc.is_alive():
            proc.kill()
    write_workers(opts.state_dir, [])
    done = sum(state_of(r) == "done" for r in queue.runs)
    print(f"campaign {queue.name}: {done}/{len(queue.runs)} runs done", flush=True)
    return done


WORKERS = "workers.json"


def write_workers(state_dir: Path, pids: list[int]) -> None:
    """Where ``--pause``/``--resume`` find this machine's running workers."""
    atomic_write_json(Path(state_dir) / WORKERS, {"pids": pids, "host": socket.gethostname()})


def running_workers(state_dir: Path) -> list[int]:
    """The PIDs of this machine's running campaign workers, as ``workers.json`` records them:
    written on this host, and each still a campaign process (not a reused PID)."""
    try:
        recorded = read_json(Path(state_dir) / WORKERS)
    except (OSError, CorruptFileError):
        return []
    if recorded.get("host") != socket.gethostname():
        return []
    pids = recorded.get("pids") or []
    return [p for p in pids if isinstance(p, int) and p > 1 and _is_worker(p)]


def signal_workers(state_dir: Path, pause: bool) -> list[int]:
    """SIGSTOP (``pause``) or SIGCONT this machine's campaign workers; the PIDs signalled.
    A paused worker holds its run and its place; its claim is not taken over by this
    machine's other workers (they are paused too)."""
    done = []
    for pid in running_workers(state_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGSTOP if pause else signal.SIGCONT)
            done.append(pid)
    if done:
        _record_pause(Path(state_dir), pause)
    return done


PAUSES = "pauses.json"


def _read_pauses(state_dir: Path) -> dict:
    """This machine's pause record, bounded like every JSON file read here; ``{}`` when it
    is missing or damaged (it only corrects the estimator's timings)."""
    try:
        return read_json(state_dir / PAUSES, dict)
    except (OSError, ValueError):
        return {}


def _spans(data: dict) -> list[list]:
    spans = data.get("spans", [])
    return (
        [s for s in spans if isinstance(s, list) and len(s) == 2] if isinstance(spans, list) else []
    )


def _record_pause(state_dir: Path, pause: bool) -> None:
    """Keep when the workers were paused, so that a paused run does not teach the estimator
    that this machine is slow (see :func:`paused_between`)."""
    data = _read_pauses(state_dir)
    spans = _spans(data)
    now = time.time()
    if pause:
        data["since"] = data.get("since") or now
    elif isinstance(data.get("since"), (int, float)):
        spans.append([data.pop("since"), now])
    data["spans"] = spans[-200:]
    atomic_write_json(state_dir / PAUSES, data)


def paused_between(state_dir: Path, start: float, end: float) -> float:
    """Seconds of ``[start, end]`` during which this machine's workers were paused."""
    data = _read_pauses(Path(state_dir))
    spans = _spans(data)
    if isinstance(data.get("since"), (int, float)):
        spans.append([data["since"], end])
    total = 0.0
    for a, b in spans:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            total += max(0.0, min(b, end) - max(a, start))
    return total


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is still an interspace campaign process (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"campaign" in cmdline and b"interspace" in cmdline
