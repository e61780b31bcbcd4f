"""One run: build the model, prepare and prune it, train it, write the run directory."""

from __future__ import annotations

import contextlib
import copy
import shutil
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from .. import data as data_mod
from ..diagnostics import Diagnostics
from ..foundations.checkpoint import file_digest
from ..foundations.claims import CLAIM, Claim, RunClaimedError, try_claim
from ..foundations.hparams import config_hash, to_dict
from ..foundations.io import CorruptFileError, atomic_write_json, remove_stale_temps
from ..interspace import Representation
from ..models import check_trusted
from ..schedules import Pruner, pruner
from ..tracking import (
    STORES,
    TrackedRun,
    TrackingScope,
    TrackingSession,
    check_trackers,
    flat_params,
)
from ..training import Callback, distributed, train
from ..training.device import Placement, configure_backends
from ..training.loop import DivergedError
from .config import RunConfig
from .imp import run_imp
from .results import (
    BASES_INIT,
    RunResult,
    data_fingerprint,
    finish,
    finished_model,
    save_initial_bases,
    summarise,
)
from .run_setup import (
    initial_model,
    load_data,
    matched_sparsity,
    prepare_representation,
    pretrained_file,
    pruner_options,
)
from .runfiles import (
    DIVERGED,
    METRICS,
    SUMMARY,
    read_config,
    read_metrics,
    read_summary,
)
from .stretches import (
    STRETCHES,
    check_same_data,
    data_was_given,
    epochs_done,
    has_resume_state,
    read_stretches,
    recording_stretch,
    summary_stretches,
)

__all__ = [
    "claim_run_dir",
    "finished_run",
    "prepare_run",
    "run",
    "tracking_session",
    "with_representation",
]


def prepare_run(
    cfg: RunConfig,
    dataset: data_mod.ImageDataset,
    model: nn.Module | None = None,
    placement: Placement | None = None,
) -> tuple[nn.Module, list[Pruner]]:
    """Build the model for ``cfg`` and the pruner it trains with (``ip.pruner``), on
    ``placement`` (default: ``cfg.train``'s, resolved here).

    The pruner sets the starting mask now: criteria prune once (at initialisation, or the
    ``--init-from`` trained model); GMP starts dense; SET/RigL start from a random mask at
    the target sparsity. The training loop binds it to its optimiser.
    """
    p = cfg.prune
    model = prepare_representation(cfg, dataset, model)
    where = placement if placement is not None else Placement.of(cfg.train)
    configure_backends(where.device, where.precision)  # for scoring
    model.to(where.device)  # prune where training runs (initial weights come from the CPU RNG)
    dataset = dataset.to(where.device)
    if p.representation.is_dense:
        return model, []
    if p.method == "imp":
        raise ValueError("method 'imp' trains in rounds: use run(), which calls run_imp")
    steps = dataset.steps_per_epoch(cfg.train.batch_size) * cfg.train.epochs
    sparsity = matched_sparsity(cfg, dataset) if p.param_matched else p.sparsity
    torch.manual_seed(cfg.train.seed + 1)  # random scores: the same draw for SP and IP
    built = pruner(p.method, model, None, sparsity, steps, **pruner_options(cfg, dataset))
    return model, [built]


def run(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    dataset: data_mod.ImageDataset | None = None,
    model: nn.Module | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    tracking: TrackingScope | None = None,
) -> RunResult:
    """Train one configuration end to end.

    ``resume`` on a finished run trains nothing: its result is read back from ``out_dir``
    (``RunResult.already_finished``). With ``out_dir``: the directory is claimed first (see
    :mod:`..foundations.claims`), so two processes never train one run;
    :class:`RunClaimedError` if another live process holds it. ``tracking``: where the
    trackers of ``cfg.train.log`` keep their files and the group the run belongs to
    (default: ``out_dir``, no group). Everything else as :func:`_run`.
    """
    if cfg.train.log and out_dir is not None and distributed.info().is_main:
        # the trackers' settings and stores first: a refusal leaves no run folder behind
        root = tracking.root if tracking is not None else out_dir
        check_trackers(cfg.train.log, root, out_dir)
    main = out_dir is not None and distributed.info().is_main
    existed = out_dir is not None and Path(out_dir).exists()
    fresh = out_dir is not None and not (Path(out_dir) / "config.json").is_file()
    claim = _claim(Path(out_dir)) if out_dir is not None else None
    try:
        return _run(cfg, out_dir, dataset, model, callbacks, progress, resume, overwrite, tracking)
    except DivergedError as e:
        if main:  # while still claimed
            atomic_write_json(
                Path(out_dir) / DIVERGED,
                {"status": "diverged", "error": str(e), "config_hash": config_hash(cfg)},
            )
        raise
    except Exception:
        if main and fresh:  # an error, not a stop (KeyboardInterrupt): nothing to resume
            discard_unstarted(Path(out_dir))
        raise
    finally:
        if claim is not None:
            claim.release()
        if main and not existed:
            with contextlib.suppress(OSError):  # only if empty: a run that failed to start
                Path(out_dir).rmdir()


def discard_unstarted(out: Path) -> None:
    """Remove what a new run wrote into ``out`` before failing in its first epoch (a rewind
    step beyond training, say): its configuration, stretch record and initial bases would
    otherwise make the same command, once mended, read as the resume of an unfinished run.
    A run with a recorded epoch, a checkpoint or an IMP round keeps everything."""
    if epochs_done(out) > 0 or has_resume_state(out):
        return
    for name in ("config.json", STRETCHES, BASES_INIT, METRICS):
        with contextlib.suppress(OSError):
            (out / name).unlink(missing_ok=True)


def _claim(out: Path) -> Claim | None:
    """Rank 0 claims ``out``; every rank learns whether it got it."""
    d = distributed.info()
    claim, owner = None, None
    if d.is_main:
        try:
            claim = try_claim(out)
        except RunClaimedError as e:
            owner = e
    (refused,) = distributed.all_reduce_sum([float(owner is not None)])
    if refused:
        raise owner if owner is not None else RunClaimedError(out / CLAIM, {})
    if claim is not None:
        remove_stale_temps(out)  # ours now: temp files in it are from killed writes
    return claim


def _run(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    dataset: data_mod.ImageDataset | None = None,
    model: nn.Module | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    tracking: TrackingScope | None = None,
) -> RunResult:
    """Train one configuration end to end.

    With ``out_dir``: ``config.json``, ``metrics.jsonl`` (per epoch), a ``checkpoint.pt``
    while training, then ``model.pt`` (the state dict, loadable with
    ``torch.load(weights_only=True)``) and, last, ``summary.json``. A directory that already
    holds a run is refused unless ``resume`` (continue it: same configuration only) or
    ``overwrite`` (start over). Under ``torchrun`` only rank 0 writes.
    """
    out = Path(out_dir) if out_dir is not None else None
    given = dataset is not None
    if out is not None:
        claim_run_dir(out, cfg, resume, overwrite)
        if resume and not overwrite and (out / SUMMARY).is_file():
            return finished_run(cfg, out, dataset)
    dataset = load_data(cfg.data) if dataset is None else dataset
    fingerprint = data_fingerprint(dataset) if out is not None else None
    if out is not None and resume and not overwrite and fingerprint is not None:
        check_same_data(out, read_stretches(out), fingerprint)  # before anything is written
    where = Placement.of(cfg.train)  # resolved once for the run: pruning and training
    dataset = dataset.to(where.device)
    writes = out is not None and distributed.info().is_main
    # a missing tracker package is an error now, before anything is written
    session = tracking_session(cfg, out, tracking) if distributed.info().is_main else None
    if model is None:  # built before anything is written: a bad --model-arg leaves no run
        model = initial_model(cfg, dataset)
    fresh = writes and not (out / "config.json").is_file()
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", to_dict(cfg))
    # stretches.json: where this stretch of the run trains, closed by finish() or a stop
    with recording_stretch(out if writes else None, where, fingerprint, given):
        if session is None:
            return _train_run(
                cfg, out, dataset, model, where, callbacks, progress, resume, None, fresh
            )
        with session:  # the tracker runs end FINISHED, FAILED or KILLED (a stop to resume)
            return _train_run(
                cfg, out, dataset, model, where, callbacks, progress, resume, session, fresh
            )


def _train_run(
    cfg: RunConfig,
    out: Path | None,
    dataset: data_mod.ImageDataset,
    model: nn.Module,
    where: Placement,
    callbacks: list[Callback] | None,
    progress: bool,
    resume: bool,
    session: TrackingSession | None,
    fresh: bool,
) -> RunResult:
    """Prune and train (or IMP's rounds), then write the results (``_run``'s second half)."""
    writes = out is not None and distributed.info().is_main
    if cfg.prune.method == "imp" and not cfg.prune.representation.is_dense:
        return run_imp(cfg, out, dataset, model, callbacks or [], progress, resume, session)
    start = time.perf_counter()
    try:
        model, schedule = prepare_run(cfg, dataset, model, where)
    except BaseException:
        if fresh:  # failed before training (--init-from, pruning): the folder stays free
            (out / "config.json").unlink(missing_ok=True)
            (out / STRETCHES).unlink(missing_ok=True)
        raise
    init_digest = cfg.model.init_from and file_digest(pretrained_file(cfg.model.init_from))
    if writes:
        save_initial_bases(out, model, config_hash(cfg))
    p = cfg.prune
    rep = p.representation
    desc = "dense" if rep.is_dense else f"{rep.kind} {p.method} {p.sparsity:g}"
    cbs = [*schedule, Diagnostics(), *(callbacks or [])]
    if session is not None:  # last: it logs what the others add to the metrics
        session.pruners = list(schedule)
        cbs.append(session.callback())
    history = train(
        model,
        dataset,
        cfg.train,
        out,
        cbs,
        progress,
        desc,
        resume=resume,
        tag=config_hash(cfg),
        placement=where,
    )
    wall = time.perf_counter() - start
    summary = summarise(model, dataset, history, wall, p.representation, where.precision)
    if init_digest:  # which trained weights it started from (they are not committed)
        summary["init_from_sha256"] = init_digest
    if writes:
        finish(out, model, summary, config_hash(cfg))
    if session is not None:
        session.log_summary(summary, model)
    return RunResult(cfg, history, summary, model)


def tracking_session(
    cfg: RunConfig, out: Path | None, scope: TrackingScope | None = None
) -> TrackingSession | None:
    """The trackers of ``cfg.train.log`` for the run in ``out`` (``None`` without any);
    one line if a tracker's package is missing or there is no run folder."""
    if not cfg.train.log:
        return None
    if out is None:
        raise ValueError("--log needs a run folder for the trackers' files: pass out_dir (--out)")
    scope = scope if scope is not None else TrackingScope(out)
    params = flat_params(to_dict(cfg))
    run = TrackedRun(config_hash(cfg), Path(scope.root), out, scope.group, params)
    return TrackingSession(cfg.train.log, run, cfg.train.log_every)


def finished_run(
    cfg: RunConfig, out: Path, dataset: data_mod.ImageDataset | None = None
) -> RunResult:
    """A run that had finished, read back from its folder (nothing is trained or written).
    Refused if it trained on other data than ``dataset`` (default: the configuration's,
    loaded only when the run had been given a dataset: otherwise its configuration names
    its data, as it names the folder)."""
    summary = read_summary(out / SUMMARY, cfg)
    stretches = summary_stretches(summary)
    if dataset is None and data_was_given(stretches):
        dataset = load_data(cfg.data)
    fingerprint = data_fingerprint(dataset) if dataset is not None else None
    if fingerprint is not None:
        check_same_data(out, stretches, fingerprint)
    history = read_metrics(out / METRICS, cfg) if (out / METRICS).is_file() else []
    model = finished_model(cfg, out, summary)
    return RunResult(cfg, history, summary, model, already_finished=True)


#: How messages name the options of a run folder: as the arguments of ``run()`` and
#: ``compare()``, or (inside :func:`cli_option_names`, which the command line enters) as
#: its flags.
PYTHON_OPTIONS = {"resume": "resume=True", "overwrite": "overwrite=True", "out": "out_dir"}
CLI_OPTIONS = {"resume": "--resume", "overwrite": "--overwrite", "out": "--out"}
_option_names: ContextVar[dict[str, str]] = ContextVar("option_names", default=PYTHON_OPTIONS)


@contextlib.contextmanager
def cli_option_names() -> Iterator[None]:
    """Inside the block, run-folder messages name the command line's flags."""
    token = _option_names.set(CLI_OPTIONS)
    try:
        yield
    finally:
        _option_names.reset(token)


def claim_run_dir(out: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an existing run; check that a resumed one is the same configuration."""
    config_file = out / "config.json"
    if not config_file.is_file():
        return
    if overwrite:
        if distributed.info().is_main:
            for p in out.iterdir():  # all but our claim and the trackers' history
                if p.name != CLAIM and p.name not in STORES:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return
    state = "a finished" if (out / "summary.json").is_file() else "an unfinished"
    names = _option_names.get()
    if not resume:
        try:  # --resume would be refused for another configuration: say so now
            other = _recorded_hash(config_file, cfg) != config_hash(cfg)
        except ValueError:  # damaged, or an import path not this run's: the general advice
            other = False
        if other:
            raise ValueError(
                f"{out} already holds {state} run of another configuration (see "
                f"{config_file}); choose another {names['out']}, or pass "
                f"{names['overwrite']} to replace it"
            )
        raise ValueError(
            f"{out} already holds {state} run; pass {names['resume']} to continue it, "
            f"{names['overwrite']} to start over, or choose another {names['out']}"
        )
    try:
        theirs = _recorded_hash(config_file, cfg)
    except CorruptFileError as e:
        raise CorruptFileError(
            config_file,
            e.problem,
            f"pass {names['overwrite']} to start over, or choose another {names['out']}",
        ) from None
    if theirs != config_hash(cfg):
        raise ValueError(
            f"{out} holds a run of another configuration; resume it with its own settings "
            f"(see {config_file}), or pass {names['overwrite']}"
        )


def _recorded_hash(config_file: Path, cfg: RunConfig) -> str:
    """The configuration hash ``config_file`` records; a model import path in it is let
    through only if it is the one ``cfg`` is given (``CorruptFileError``,
    ``UntrustedModelError``: both ``ValueError``)."""
    recorded = read_config(config_file)
    check_trusted(recorded.model.model, f"{config_file}: field model.model", {cfg.model.model})
    return config_hash(recorded)


def with_representation(cfg: RunConfig, rep: str | Representation) -> RunConfig:
    """A copy of ``cfg`` in ``rep``: a :class:`Representation`, or a kind (``"sp"``, ...)
    that keeps ``cfg``'s basis options."""
    if not isinstance(rep, Representation):
        rep = replace(cfg.prune.representation, kind=Representation.parse(rep).kind)
    return replace(copy.deepcopy(cfg), prune=replace(cfg.prune, representation=rep))
