"""Committing a campaign's results as they come, so a fresh clone continues where a stopped
machine left off.

A finished run's small files (``config.json``, ``summary.json``, ``metrics.jsonl``,
``stretches.json``, and ``model.isp`` where the queue keeps its trained sparse model; never
``model.pt``) are committed as soon as it finishes. An unfinished run's ``checkpoint.pt`` (a
few MB, a pruned run's stored compactly; ``*.pt`` is otherwise ignored by git) is committed
when its machine stops, beside the small files it needs to resume, and removed in the commit
that records the run finished: one file per unfinished run (an IMP run in a later round:
also the rewind state and the last finished round's model, :func:`resume_files`). No file
over :data:`MAX_GIT_FILE` is committed: a run whose checkpoint is larger stays uncommitted
until it finishes. Only the run's own folder goes into each commit (``git commit --
<folder>``), so work staged by someone else is left alone.
Failures are reported in one line and never stop the campaign: the files stay on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
from pathlib import Path

from ..experiments.config import RunConfig
from ..experiments.imp import resume_files as imp_resume_files
from ..experiments.sweep import model_size
from ..foundations.io import lies_in
from ..pruning.registry import method_names
from ..schedules.registry import section_schedules
from ..training.checkpointing import CHECKPOINT

#: The files of a run that are committed: its small, text ones and its compact sparse model
#: (``model.isp``, a few MB at most; never ``model.pt``).
SMALL = (".json", ".jsonl", ".isp")
#: The largest file a campaign commits (bytes): the limit per tracked file of the repository
#: the campaign was built for, which keeps every clone small. A ResNet-20's checkpoint is
#: about 3.3 MB (measured), an IMP run's rewind state and round model about 2 MB each, a
#: sparse ResNet-18 at 95% (``model.isp``) about 4 MB. An ImageNet ResNet-18's checkpoint
#: is 134 MB dense, 3.5 MB at 98% sparsity (stored compactly, ``docs/campaign.md``), but
#: 15.5 MB with GMP at 95% (its pruned weights keep their values): such a run is not
#: committed until it finishes and its checkpoint stays on this machine (a fresh clone
#: starts it over); a larger small file stays on disk, named in one line.
MAX_GIT_FILE = 5 * 10**6
#: Bytes of checkpoint per model parameter of a run that is dense at some point: weights,
#: SGD momentum and mask in 4 bytes each (a ResNet-20's 0.27 M parameters give 3.3 MB, as
#: measured). The checkpoint is the largest file a run resumes from: an IMP run's rewind
#: state and round model hold no momentum.
CHECKPOINT_BYTES_PER_PARAMETER = 12
#: A run sparse from its first step (a criterion, RigL, SET) stores per parameter one bit
#: of bitmap and, per unpruned entry, 4 bytes of weight and 4 of momentum; this factor
#: covers its unpruned layers (measured: ResNet-18 at 98%, 3.46-3.64 MB against 3.33 MB).
SPARSE_CHECKPOINT_MARGIN = 1.25
#: Attempts when git's own index.lock is held by another git command on this checkout.
LOCK_RETRIES = 30


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _lock_path(cwd: Path) -> Path | None:
    done = _git(["rev-parse", "--git-path", "interspace-campaign.lock"], cwd)
    return (cwd / done.stdout.strip()) if done.returncode == 0 else None


def sparse_from_the_start(cfg: RunConfig) -> bool:
    """Whether ``cfg``'s run holds its final sparsity from its first step (pruned at
    initialisation, or a dynamic sparse schedule), so its checkpoints are compact."""
    p = cfg.prune
    return (
        p.representation.kind != "dense"
        and p.sparsity > 0
        and (p.method in method_names() or p.method in section_schedules("dst"))
    )


def checkpoint_bytes(cfg: RunConfig) -> int | None:
    """About how large ``cfg``'s run's checkpoint grows (its model counted on the meta
    device); None if the model cannot be counted that way."""
    params, _ = model_size(cfg)
    if params is None:
        return None
    if sparse_from_the_start(cfg):
        per = (1 / 8 + 8 * (1 - cfg.prune.sparsity)) * SPARSE_CHECKPOINT_MARGIN
        return int(params * per)
    return params * CHECKPOINT_BYTES_PER_PARAMETER


def checkpoint_goes_through_git(cfg: RunConfig) -> bool:
    """Whether a checkpoint of ``cfg``'s run would be small enough to commit, so that the
    next machine of its kind continues the run (a model that cannot be counted on the meta
    device counts as too large)."""
    size = checkpoint_bytes(cfg)
    return size is not None and size <= MAX_GIT_FILE


def resume_files(run_dir: Path) -> list[Path]:
    """The large files ``run_dir``'s unfinished run continues from: its ``checkpoint.pt``,
    or for a run trained in rounds (IMP) the round's checkpoint, the rewind state and the
    last finished round's model (:func:`..experiments.imp.resume_files`)."""
    ckpt = Path(run_dir) / CHECKPOINT
    return ([ckpt] if ckpt.is_file() else []) + imp_resume_files(run_dir)


def too_large_to_commit(files: list[Path]) -> int | None:
    """The size of the largest of an unfinished run's :func:`resume_files` when it is over
    :data:`MAX_GIT_FILE` (the run then continues only on this checkout), else None."""
    sizes = []
    for p in files:
        with contextlib.suppress(OSError):  # removed meanwhile: its run just finished
            sizes.append(p.stat().st_size)
    largest = max(sizes, default=0)
    return largest if largest > MAX_GIT_FILE else None


def _commit_args(message: str, folder: Path, cwd: Path, top: str, removes: bool) -> list[str]:
    """``git commit`` of ``folder`` alone. ``git commit -- <folder>`` takes the files on disk,
    so it cannot untrack a checkpoint that stays on disk (an IMP run's rewind state): when
    this run removes one and nothing outside its folder is staged, the index is committed
    as it is; otherwise such files stay tracked until someone else's staged work is in."""
    if removes:
        staged = _git(["diff", "--cached", "--name-only", "-z"], cwd).stdout.split("\0")
        if all(lies_in(Path(top, t), folder) for t in staged if t):
            return ["commit", "-q", "-m", message]
    return ["commit", "-q", "-m", message, "--", str(folder)]


def commit_run(run_dir: Path, message: str, checkpoint: bool = False) -> bool:
    """Commit the files of ``run_dir`` (with the files it resumes from if ``checkpoint``,
    :func:`resume_files`); True if it worked. Large files committed earlier that are not
    committed now (a finished run's checkpoints) are removed in the same commit."""
    run_dir = Path(run_dir)
    cwd = run_dir.parent
    lock = _lock_path(cwd)
    if lock is None:
        print(f"git: {run_dir} is not in a git checkout; its files stay on disk", flush=True)
        return False
    folder = run_dir.resolve()
    top = _git(["rev-parse", "--show-toplevel"], cwd).stdout.strip()
    if not top or not lies_in(folder, top):  # a committed symlink leading out of the checkout
        print(f"git: {run_dir} leads outside the checkout; nothing of it is committed", flush=True)
        return False
    large = resume_files(folder) if checkpoint else []
    if size := too_large_to_commit(large):
        print(
            f"git: {run_dir}'s checkpoint is {size / 1e6:.1f} MB, over the "
            f"{MAX_GIT_FILE / 1e6:.0f} MB a committed file may have: the unfinished run is "
            "not committed; it continues on this checkout (a fresh clone starts it over)",
            flush=True,
        )
        return False
    small = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix not in SMALL:
            continue
        if (size := p.stat().st_size) > MAX_GIT_FILE:
            print(f"git: {p} is {size / 1e6:.1f} MB: not committed, it stays on disk", flush=True)
            continue
        small.append(str(p))
    steps = [["add", "--", *small]] if small else []
    if large:
        steps.append(["add", "-f", "--", *map(str, large)])
    tracked = _git(["ls-files", "-z", "--", str(folder)], cwd).stdout.split("\0")
    stale = [t for t in tracked if t.endswith(".pt") and (cwd / t).resolve() not in large]
    if stale:
        steps.append(["rm", "-q", "--cached", "--ignore-unmatch", "--", *stale])
    with open(lock, "w") as held:  # one commit at a time from this checkout's processes
        fcntl.flock(held, fcntl.LOCK_EX)
        for args in [*steps, None]:
            if args is None:  # the commit, once the index holds this run's changes
                args = _commit_args(message, folder, cwd, top, removes=bool(stale))
            for _ in range(LOCK_RETRIES):
                done = _git(args, cwd)
                if "index.lock" not in done.stderr:
                    break
                time.sleep(2)  # a git command of someone else's: wait for it
            text = done.stdout + done.stderr
            if done.returncode and "nothing to commit" not in text and "no changes" not in text:
                print(
                    f"git {args[0]} failed ({text.strip()[:200]}); files stay on disk", flush=True
                )
                return False
    return True
