"""Issue 26, item 6: the first ten minutes.

The demo's headline over several seeds, progress lines, the thread rule, ``--model`` from
the current directory, no ``config.json`` left by a model that fails to build, lazy layers,
and one extension for sparse files.
"""

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.cli import main
from interspace_pruning.experiments import Comparison, DataConfig, ModelConfig, RunConfig
from interspace_pruning.experiments.threads import TINY_GFLOPS, auto_threads, batch_gflops
from interspace_pruning.models import materialize, search_cwd

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--train-subset", "200", "--test-subset", "60", "--epochs", "1", "--quiet"]

cli_main = sys.modules["interspace_pruning.cli.main"]


# ---- the demo: seeds, mean ± std, IP - SP paired by seed --------------------------------


def test_makefile_demo_runs_three_seeds():
    makefile = (ROOT / "Makefile").read_text()
    demo = re.search(r"^demo:.*\n\t(.+)$", makefile, re.M).group(1)
    seeds = re.search(r"--seeds((?: \d+)+)", demo)
    assert seeds and len(seeds.group(1).split()) >= 3
    assert "--resume" in demo


def test_compare_seeds_prints_mean_std_and_paired_difference(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["compare", *FAST[:-1], "--no-dense", "--method", "random", "--seeds", "0", "1"]
    assert main([*args, "--out", str(out)]) == 0
    cap = capsys.readouterr()
    # a line per finished run (stderr: the bars are off outside a terminal)
    assert "[1/4] seed 0 sp: test acc" in cap.err and "[4/4] seed 1 ip: test acc" in cap.err
    assert "mean ± std over seeds 0 1, paired by seed" in cap.out
    assert re.search(r"\| sp \| \d+\.\d\d ± \d+\.\d\d% \|", cap.out)
    saved = json.loads((out / "compare.json").read_text())
    assert saved["seeds"] == [0, 1]
    assert [(r["seed"], r["representation"]) for r in saved["rows"]] == [
        (0, "sp"),
        (0, "ip"),
        (1, "sp"),
        (1, "ip"),
    ]
    acc = {(r["seed"], r["representation"]): r["test_acc"] for r in saved["rows"]}
    assert saved["ip_minus_sp"]["per_seed"] == pytest.approx(
        [acc[0, "ip"] - acc[0, "sp"], acc[1, "ip"] - acc[1, "sp"]]
    )
    for s in (0, 1):  # each seed's runs in their own folders, with that seed
        cfg = json.loads((out / f"seed{s}" / "ip" / "config.json").read_text())
        assert cfg["train"]["seed"] == s
    # --resume shows the finished runs again, retraining nothing
    stamp = (out / "seed1" / "sp" / "model.pt").stat().st_mtime_ns
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert "(finished before)" in capsys.readouterr().err
    assert (out / "seed1" / "sp" / "model.pt").stat().st_mtime_ns == stamp


def _rows(acc: dict[int, tuple[float, float]]) -> list[dict]:
    rows = []
    for seed, (sp, ip_acc) in acc.items():
        for rep, a in (("sp", sp), ("ip", ip_acc)):
            rows.append({"representation": rep, "seed": seed, "test_acc": a, "train_loss": 0.1})
    return rows


def test_verdict_is_paired_by_seed_and_names_a_mixed_result():
    cfg = RunConfig()
    agree = Comparison(cfg, _rows({0: (0.90, 0.95), 1: (0.80, 0.82), 2: (0.85, 0.86)}), [0, 1, 2])
    assert agree.winner() == "ip"
    assert agree.differences() == pytest.approx([0.05, 0.02, 0.01])
    assert "IP ahead in every seed: IP - SP = +2.67 ± 2.08 points" in agree.verdict()
    # ahead in every seed is no win: with 3 seeds the paired t-test is not significant
    t = agree.paired_test()
    assert t is not None and t.p > 0.05
    assert f"paired t-test p = {t.p:.2g}: no significant difference" in agree.verdict()
    assert agree.to_json()["paired_t_test"]["significant"] is False
    mixed = Comparison(cfg, _rows({0: (0.90, 0.95), 1: (0.80, 0.78)}), [0, 1])
    assert mixed.winner() == "mixed" and "IP ahead in 1 of 2 seeds" in mixed.verdict()
    assert "| ip | 86.50 ± 12.02% |" in mixed.markdown()
    one = Comparison(cfg, _rows({0: (0.90, 0.95)}))
    assert one.winner() == "ip" and "seed 0; one seed, no test: --seeds 0 1 2" in one.verdict()


@pytest.mark.parametrize("seeds,match", [(["0", "0"], "twice"), (["-1"], ">= 0")])
def test_bad_seeds_are_one_line(seeds, match, tmp_path, capsys):
    assert main(["compare", *FAST, "--seeds", *seeds, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err


# ---- threads ----------------------------------------------------------------------------


def _cifar(model="resnet20") -> RunConfig:
    cfg = RunConfig(data=DataConfig(dataset="cifar10"), model=ModelConfig(model=model))
    return replace(cfg, train=replace(cfg.train, device="cpu"))


def test_tiny_model_on_the_cpu_gets_one_thread():
    cfg = replace(RunConfig(), train=replace(RunConfig().train, device="cpu"))
    assert batch_gflops(cfg) < TINY_GFLOPS  # the demo's convnet on 8x8 digits
    choice = auto_threads([cfg], default=8, load=0.0, environ={}, cores=8)
    assert choice.threads == 1 and "tiny" in choice.reason


def test_larger_models_get_the_free_cores():
    cfg = _cifar()
    assert batch_gflops(cfg) > TINY_GFLOPS
    assert auto_threads([cfg], default=4, load=0.2, environ={}, cores=4).threads == 4
    assert auto_threads([cfg], default=4, load=1.6, environ={}, cores=4).threads == 2
    assert auto_threads([cfg], default=4, load=9.0, environ={}, cores=4).threads == 1
    # a sweep with one larger model is not tiny
    tiny = replace(RunConfig(), train=replace(RunConfig().train, device="cpu"))
    assert auto_threads([tiny, cfg], default=4, load=0.0, environ={}, cores=4).threads == 4


def test_thread_variables_in_the_environment_win():
    cfg = replace(RunConfig(), train=replace(RunConfig().train, device="cpu"))
    assert auto_threads([cfg], environ={"OMP_NUM_THREADS": "3"}) is None


def test_import_path_models_are_not_called_to_count_flops():
    cfg = _cifar("tests.nonexistent_module_xyz:build")
    assert batch_gflops(cfg) is None  # nothing imported
    assert auto_threads([cfg], default=2, load=0.0, environ={}, cores=2).threads == 2


def test_cli_threads_auto_and_the_users_count(monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    seen = []

    def fake_run(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise ValueError("stop here")

    monkeypatch.setattr(cli_main, "run", fake_run)
    before = torch.get_num_threads()
    assert main(["train", *FAST, "--device", "cpu"]) == 2  # auto: the digits convnet
    assert main(["train", *FAST, "--device", "cpu", "--threads", "3"]) == 2  # the user's
    assert seen == [1, 3]
    assert torch.get_num_threads() == before  # restored after an in-process main()
    try:
        main(["train", "--threads", "0"])
    except SystemExit as e:
        assert e.code == 2
    assert "must be at least 1" in capsys.readouterr().err


# ---- --model from the current directory; lazy layers ------------------------------------

BUILDERS = """
from torch import nn

def lazy_linear(num_classes=10, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.LazyLinear(num_classes),
    )

def lazy_conv(num_classes=10):
    return nn.Sequential(
        nn.LazyConv2d(8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(num_classes),
    )
"""


@pytest.fixture
def builders_in_cwd(tmp_path, monkeypatch):
    """A module of model builders in the current directory, not on sys.path."""
    name = "ip_cwd_builders_t26"
    (tmp_path / f"{name}.py").write_text(BUILDERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def test_model_from_the_current_directory(builders_in_cwd, tmp_path, capsys):
    name = builders_in_cwd
    args = ["train", *FAST, "--model", f"{name}:lazy_linear", "--out", str(tmp_path / "r")]
    assert main(args) == 0, capsys.readouterr().err
    assert str(tmp_path) == sys.path[0]
    assert main([*args, "--resume"]) == 0  # the finished run's model is rebuilt, lazily
    assert "holds a finished run" in capsys.readouterr().out


def test_search_cwd_only_for_modules_that_lie_there(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    assert not search_cwd("not_here_t26:build", cwd=str(tmp_path))
    assert not search_cwd("convnet", cwd=str(tmp_path))  # a registered name
    assert sys.path == before
    (tmp_path / "pkg_t26").mkdir()
    assert search_cwd("pkg_t26.nets:build", cwd=str(tmp_path))
    assert sys.path[0] == str(tmp_path)


def test_lazy_conv_and_linear_are_materialised(builders_in_cwd, tmp_path, capsys):
    name = builders_in_cwd
    out = tmp_path / "c"
    args = ["compare", *FAST, "--no-dense", "--sparsity", "0.5", "--model", f"{name}:lazy_conv"]
    args += ["--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert rows[0]["nonzero"] == rows[1]["nonzero"] > 0  # the same budget: both lazy layers


def test_lazy_layers_get_one_line_where_no_input_shape_is_known():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(ValueError, match=r"lazy layers .*2 \(LazyLinear\).*model\(x\)") as e:
        ip.prepare(model, "ip")
    assert "\n" not in str(e.value)
    torch.manual_seed(0)
    materialize(model, (1, 8, 8))
    assert model[2].weight.shape == (10, 4 * 6 * 6)
    ip.prepare(model, "ip")  # now it prunes like any model


def test_materialize_failure_is_one_line():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(ValueError, match="to size them failed") as e:
        materialize(model, (1, 8, 8))  # 1 channel into a 3-channel conv
    assert "\n" not in str(e.value)


# ---- a model that fails to build leaves no config.json ----------------------------------


def test_a_bad_model_arg_leaves_the_folder_free(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--model-arg", "widht=8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'widht'" in err and "its options: width" in err and "\n" not in err
    assert not (out / "config.json").exists()
    fixed = ["train", *FAST, "--model-arg", "width=8", "--out", str(out)]
    assert main(fixed) == 0  # the same folder, no --overwrite


def test_a_bad_init_from_leaves_the_folder_free(tmp_path, capsys):
    out = tmp_path / "run"
    missing = tmp_path / "missing" / "model.pt"
    assert main(["train", *FAST, "--init-from", str(missing), "--out", str(out)]) != 0
    capsys.readouterr()
    assert not (out / "config.json").exists()
    assert main(["train", *FAST, "--out", str(out)]) == 0


# ---- one extension for sparse files -----------------------------------------------------

SPARSE_CALL = re.compile(r"(export_sparse|load_sparse)\(")
FILE_LITERAL = re.compile(r"""["']([\w./-]+\.(\w+))["']""")


def test_sparse_files_are_isp_everywhere():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for folder in ("examples", "benchmarks", "src", "tests", "fuzz"):
        files += (ROOT / folder).rglob("*.py")
    wrong = []
    for f in files:
        if not f.is_file():
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if SPARSE_CALL.search(line):
                wrong += [
                    f"{f.relative_to(ROOT)}:{n}: {m.group(1)}"
                    for m in FILE_LITERAL.finditer(line)
                    if m.group(2) != "isp"
                ]
    assert not wrong, wrong
    assert "mynet.isp" in (ROOT / "examples" / "own_loop.py").read_text()
