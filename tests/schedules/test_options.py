"""Schedule options are defined once: the registry's options dataclasses give the library's
defaults, the command line's flags, the sweep keys and the run configuration's sections."""

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.cli import main
from interspace_pruning.cli.main import _config, build_parser
from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.experiments.config import config_from_dict
from interspace_pruning.experiments.grid import canonical, override
from interspace_pruning.experiments.run_setup import pruner_options
from interspace_pruning.experiments.sweep import load_sweep
from interspace_pruning.foundations.hparams import config_hash, hp, to_dict
from interspace_pruning.foundations.io import read_jsonl
from interspace_pruning.schedules import (
    AllocationOptions,
    Pruner,
    make_options,
    register_schedule,
    registry,
    schedule_sections,
)
from interspace_pruning.schedules.dst import DynamicSparseTraining


def _cli(*args: str) -> RunConfig:
    return _config(build_parser().parse_args(["train", *args]))


def test_cli_defaults_are_the_library_defaults():
    cfg = _cli()
    for section, own in cfg.options.items():
        library = type(own).__options__()  # the options dataclass, at its defaults
        for f in dataclasses.fields(own):
            assert getattr(own, f.name) == getattr(library, f.name), (section, f.name)
    assert cfg.gmp.interval is None and cfg.dst.interval is None  # about ten updates


@pytest.mark.parametrize("method", ["gmp", "rigl", "set", "imp"])
def test_a_run_passes_the_pruner_exactly_the_library_defaults(method):
    cfg = _cli("--method", method)
    assert make_options(method, **pruner_options(cfg, None)) == make_options(method)


def test_flags_of_every_schedule_section_old_names_included():
    cfg = _cli(
        *("--gmp-interval", "7", "--gmp-start", "0.2", "--gmp-end", "0.6"),
        *("--gmp-initial-sparsity", "0.1", "--dst-interval", "9", "--dst-drop-fraction", "0.2"),
        *("--dst-stop", "0.5", "--imp-rounds", "2", "--imp-rate", "0.3", "--rewind-step", "3"),
    )
    assert (cfg.gmp.interval, cfg.gmp.start, cfg.gmp.end, cfg.gmp.initial_sparsity) == (
        7,
        0.2,
        0.6,
        0.1,
    )
    assert (cfg.dst.interval, cfg.dst.drop_fraction, cfg.dst.stop_fraction) == (9, 0.2, 0.5)
    assert (cfg.imp.rounds, cfg.imp.rate, cfg.imp.rewind_step) == (2, 0.3, 3)
    new = _cli("--dst-stop-fraction", "0.5", "--imp-rewind-step", "3")
    assert new.dst.stop_fraction == 0.5 and new.imp.rewind_step == 3
    with pytest.raises(ValueError, match="interval must be >= 1 step"):
        _cli("--dst-interval", "0")  # the options' own checks


def test_old_and_new_sweep_keys_name_the_same_run():
    old = RunConfig()
    for key, value in [
        ("prune.method", "rigl"),
        ("dst.dst_interval", 20),
        ("dst.dst_stop", 0.5),
        ("gmp.gmp_interval", 50),
        ("imp.imp_rounds", 2),
        ("imp.rewind_step", 50),
        ("prune.basis", "pca"),
        ("prune.normalize_basis", False),
        ("prune.representation", "sp"),  # the kind: the basis options stay
    ]:
        old = override(old, key, value)
    new = RunConfig(
        prune=PruneConfig(ip.Representation("sp", basis="pca", normalize=False), "rigl"),
        options={
            "dst": {"interval": 20, "stop_fraction": 0.5},
            "gmp": {"interval": 50},
            "imp": {"rounds": 2, "rewind_step": 50},
        },
    )
    assert old == new and config_hash(old) == config_hash(new)
    assert to_dict(new)["dst"] == {"dst_interval": 20, "dst_drop_fraction": 0.3, "dst_stop": 0.5}
    with pytest.raises(ValueError, match="unknown hyperparameter 'gmp.every'"):
        override(new, "gmp.every", 3)
    with pytest.raises(ValueError, match="must be int"):
        override(new, "dst.interval", "20")
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.gmp.gmp_interval = 4  # old attribute names fail loudly, never set nothing


def test_representation_flags_make_the_value():
    cfg = _cli(
        *("--representation", "sp", "--basis", "pca", "--share", "network"),
        *("--no-trainable-basis", "--no-normalize-basis"),
    )
    assert cfg.prune.representation == ip.Representation("sp", "pca", "network", False, False)
    prune = to_dict(cfg)["prune"]
    assert (prune["representation"], prune["basis"], prune["normalize_basis"]) == (
        "sp",
        "pca",
        False,
    )
    assert config_from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert PruneConfig(representation="dense").representation.is_dense


FAST = ["--train-subset", "300", "--test-subset", "100", "--quiet", "--threads", "1"]


def test_cli_rigl_updates_masks_on_a_short_run(tmp_path):
    # 5 steps per epoch: a fixed 100-step interval would update nothing (static sparsity)
    assert main(["train", *FAST, "--method", "rigl", "--epochs", "2", "--out", str(tmp_path)]) == 0
    assert sum(m["mask_updates"] for m in read_jsonl(tmp_path / "metrics.jsonl")) >= 2


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def _bound(name: str, total_steps: int, **options) -> Pruner:
    model = ip.prepare(Net(), "sp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return ip.pruner(name, model, opt, 0.5, total_steps, **options)


@pytest.mark.parametrize(
    "name,interval,updates", [("rigl", 100, "0 mask updates"), ("gmp", 50, "1 mask update ")]
)
def test_an_interval_with_fewer_than_two_updates_warns(name, interval, updates):
    with pytest.warns(UserWarning, match=f"interval of {interval} steps gives {updates}"):
        _bound(name, 66, interval=interval)


@pytest.mark.parametrize("name", ["rigl", "set", "gmp"])
def test_the_default_interval_gives_about_ten_updates_and_no_warning(name, recwarn):
    pruner = _bound(name, 66)
    made, _ = pruner.planned_updates()
    assert 8 <= made <= 13
    assert not [w for w in recwarn if "mask update" in str(w.message)]


def test_total_steps_is_saved_and_a_resume_that_changes_it_is_refused():
    state = _bound("rigl", 20).state_dict()
    assert state["total_steps"] == 20
    _bound("rigl", 20).load_state_dict(state)
    with pytest.raises(ValueError, match="planned over 20 training steps, but it is now bound"):
        _bound("rigl", 30).load_state_dict(state)
    unbound = DynamicSparseTraining(sparsity=0.5)
    unbound.load_state_dict(state)  # e.g. a callback restored before fitting starts
    with pytest.raises(ValueError, match="total_steps=20"):
        unbound.bind(ip.prepare(Net(), "sp"), None, 30)
    old = {k: v for k, v in state.items() if k != "total_steps"}  # saved before: unchecked
    _bound("rigl", 30).load_state_dict(old)


@dataclass
class EveryKOptions(AllocationOptions):
    every: int = hp(4, "prune a little every this many steps")
    fraction: float = 0.5


class EveryK(Pruner):
    def __init__(self, sparsity, every, fraction, **allocation):
        super().__init__(**allocation)
        self.target, self.every, self.fraction = sparsity, every, fraction

    def update(self, t):
        if t % self.every == 0:
            self.change_masks(t, self.target, lambda: ip.prune(self.model, "magnitude", 0.1))


@pytest.fixture
def every_k():
    before = config_hash(RunConfig())

    @register_schedule("every-k-test", EveryKOptions)
    def build(o, sparsity, total_steps):
        return EveryK(sparsity, o.every, o.fraction, **o.allocation_kwargs())

    yield before
    registry._SCHEDULES.pop("every-k-test")
    registry._SECTION_CLASSES.pop("every_k_test", None)


def test_a_registered_schedule_gets_flags_sweep_keys_and_a_config_section(every_k, tmp_path):
    assert "every_k_test" in schedule_sections()
    cfg = _cli("--method", "every-k-test", "--every-k-test-every", "3")
    assert cfg.options["every_k_test"].every == 3 and cfg.every_k_test.fraction == 0.5
    assert pruner_options(cfg, None)["every"] == 3
    assert override(cfg, "every_k_test.every", 2).every_k_test.every == 2
    assert override(cfg, "every_k_test.every_k_test_fraction", 0.25).every_k_test.fraction == 0.25
    saved = json.loads(json.dumps(to_dict(cfg)))
    assert saved["every_k_test"] == {"every_k_test_every": 3, "every_k_test_fraction": 0.5}
    assert config_from_dict(saved) == cfg
    other = override(cfg, "every_k_test.every", 5)
    assert config_hash(other) != config_hash(cfg)  # the method's own options name the run
    snip = canonical(override(other, "prune.method", "snip"))
    assert config_hash(snip) == every_k  # registering a schedule renames no run
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "base: {prune: {method: every-k-test}, every_k_test: {every: 6}}\n"
        "grid: {every_k_test.fraction: [0.25, 0.75]}\n"
    )
    configs = load_sweep(sweep).configs
    assert [(c.every_k_test.every, c.every_k_test.fraction) for c in configs] == [
        (6, 0.25),
        (6, 0.75),
    ]


def test_a_registered_schedule_appears_in_the_train_help(every_k, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--every-k-test-every" in text and "prune a little every this many steps" in text


def test_imp_is_a_registered_schedule_run_in_rounds():
    assert "imp" in ip.pruner_names() and registry.section_of("imp") == "imp"
    with pytest.raises(ValueError, match="lottery_ticket"):
        _bound("imp", 10)
    with pytest.raises(ValueError, match="IMP rate must be in"):
        make_options("imp", rate=1.5)
