"""A received run folder is untrusted input: every subcommand that reads one (report, bench,
train --resume) answers a damaged, planted or oversized file in one line, writes nothing
outside the folder, never hangs, and the report never mixes runs of different settings."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from interspace_pruning.cli import main
from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.experiments.config import config_from_dict
from interspace_pruning.experiments.runfiles import read_model, write_model
from interspace_pruning.foundations.hparams import config_hash, to_dict
from interspace_pruning.report import write_report
from interspace_pruning.training import TrainConfig

FAST = ["--train-subset", "200", "--test-subset", "50", "--batch-size", "32", "--quiet"]
TRAIN = ["train", *FAST, "--threads", "1", "--epochs", "1", "--sparsity", "0.9"]
DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real finished run (digits, 1 epoch): copied by each test that plants files."""
    out = tmp_path_factory.mktemp("real") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def copy(finished, tmp_path):
    target = tmp_path / "received"
    shutil.copytree(finished, target)
    return target


def _fake_run(root, name, rep="ip", seed=0, acc=0.7, lr=0.05, summary=None, epochs=2):
    d = root / name
    d.mkdir(parents=True)
    cfg = RunConfig(
        prune=PruneConfig(representation=rep, method="snip", sparsity=0.95),
        train=TrainConfig(epochs=epochs, seed=seed, lr=lr),
    )
    (d / "config.json").write_text(json.dumps(to_dict(cfg)))
    body = {"test_acc": acc, "wall_time": 1.0} if summary is None else summary
    (d / "summary.json").write_text(json.dumps(body))
    return d


def _one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert lines and "Traceback" not in err, err
    return lines[-1]


# --- the report: damaged files are skipped and named, the rest is reported ----------------


@pytest.mark.parametrize(
    "name, content, field",
    [
        ("config.json", DEEP, "nests deeper"),
        ("summary.json", DEEP, "nests deeper"),
        ("metrics.jsonl", DEEP + "\n", "nests deeper"),
        ("summary.json", json.dumps({"test_acc": 0.5, "hardware": "x"}), "'hardware'"),
        ("summary.json", json.dumps({"test_acc": 0.5, "wall_time": [1]}), "'wall_time'"),
        ("summary.json", json.dumps({"test_acc": 0.5, "num_classes": 10**12}), "'num_classes'"),
        ("summary.json", json.dumps({"test_acc": "0.99"}), "'test_acc'"),
        ("summary.json", "{}", "'test_acc'"),
        ("summary.json", json.dumps({"test_acc": 0.5, "stretches": ["a"]}), "'stretches'[0]"),
        (
            "summary.json",
            json.dumps({"test_acc": 0.5, "stretches": [{"cpu_id": "x" * 10**6}]}),
            "'cpu_id'",
        ),
        ("metrics.jsonl", json.dumps({"epoch": "one", "test_acc": 0.5}) + "\n", "'epoch'"),
        ("metrics.jsonl", json.dumps({"epoch": 1, "test_acc": [0.5]}) + "\n", "'test_acc'"),
        # JSON integers are unbounded: 10**400 must not reach float() (OverflowError)
        ("summary.json", '{"test_acc": 1' + "0" * 400 + "}", "'test_acc'"),
        ("summary.json", '{"test_acc": 0.5, "wall_time": 1' + "0" * 400 + "}", "'wall_time'"),
        ("summary.json", '{"test_acc": 0.5, "num_classes": 1' + "0" * 400 + "}", "'num_classes'"),
        ("config.json", "LR", "train.lr"),
        ("config.json", "EPOCHS", "train.epochs"),
        # another run's result copied in: its identity, or (older files) its representation
        ("summary.json", json.dumps({"test_acc": 0.9, "config_hash": "0123456789"}), "another"),
        ("summary.json", json.dumps({"test_acc": 0.9, "representation": "sp"}), "'sp' run"),
        # a run of 2 epochs writes 2 rows (3 with an epoch 0): more are padding, refused
        # before they are parsed (tiny rows take over ten times their bytes in memory)
        (
            "metrics.jsonl",
            "".join(json.dumps({"epoch": e}) + "\n" for e in range(4)),
            "more than 3 rows",
        ),
    ],
)
def test_a_damaged_file_is_named_and_the_rest_reported(tmp_path, name, content, field):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp")
    _fake_run(root, "ip0")
    if content in ("LR", "EPOCHS"):  # the field's value becomes 10**400 in the JSON text
        text = (root / "ip0" / name).read_text()
        content = re.sub(
            rf'"{content.lower()}": [^,}}]+', f'"{content.lower()}": 1{"0" * 400}', text
        )
        assert "0" * 400 in content
    (root / "ip0" / name).write_text(content)
    text = write_report(root).read_text()
    assert "1 finished runs" in text and "1 left out (damaged files)" in text
    left_out = next(line for line in text.splitlines() if line.startswith("- left out:"))
    assert left_out.replace("\\", "").startswith(f"- left out: ip0/{name} ")
    assert field.replace("'", "") in left_out.replace("'", "").replace("\\", "")
    assert "diverged" not in text  # a damaged summary is not a diverged run


def test_a_fifo_in_a_folder_does_not_hang_the_report(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp")
    _fake_run(root, "ip0")
    (root / "ip0" / "config.json").unlink()
    os.mkfifo(root / "ip0" / "config.json")
    code = (
        "import sys; from interspace_pruning.report import write_report; "
        "print(open(write_report(sys.argv[1])).read())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "not a regular file" in done.stdout


def test_markdown_from_a_file_is_escaped(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp")
    error = "boom\n\n# Owned\n![x](http://evil.example/x.png)"
    _fake_run(root, "ip0", acc=float("nan"), summary={"test_acc": None, "error": error})
    text = write_report(root).read_text()
    assert "\n# Owned" not in text and "![x](http" not in text
    assert "\\# Owned" in text and "!\\[x\\](http" in text


# --- the report never mixes configurations -------------------------------------------------


def test_runs_of_different_settings_never_share_a_cell(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "ip_lr005", rep="ip", lr=0.05, acc=0.70)
    _fake_run(root, "sp_lr005", rep="sp", lr=0.05, acc=0.60)
    _fake_run(root, "ip_lr02", rep="ip", lr=0.2, acc=0.10)
    text = write_report(root).read_text()
    assert text.count("## digits / convnet") == 2
    assert "differ in more than seed and representation (train.lr)" in text
    assert "3 finished runs" in text
    assert "train.lr = 0.05" in text and "train.lr = 0.2" in text
    # the lr 0.05 table pairs 70 with 60; the lr 0.2 run stands alone, never "IP − SP −50"
    assert "| snip | 95% | 60.00 | 70.00 |" in text
    assert "| snip | 95% | - | 10.00 |" in text


def test_an_sp_and_an_ip_run_of_different_settings_are_never_a_pair(tmp_path):
    """An SP sweep at lr 0.05 and an IP sweep at lr 0.2 merged into one folder: the report
    gave one row with IP − SP +23.68, under "same initial weights and data order"."""
    root = tmp_path / "sweep"
    _fake_run(root, "sp_lr005", rep="sp", lr=0.05, acc=0.10)
    _fake_run(root, "ip_lr02", rep="ip", lr=0.2, acc=0.34)
    text = write_report(root).read_text()
    assert "differ in more than seed and representation (train.lr)" in text
    assert "| snip | 95% | 10.00 | - |" in text and "| snip | 95% | - | 34.00 |" in text
    assert "+24.00" not in text


def test_a_dense_baseline_serves_each_setting_of_a_pruning_option(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "ip", rep="ip", acc=0.7)
    _fake_run(root, "sp", rep="sp", acc=0.6)
    d = _fake_run(root, "ip_crit", rep="ip", acc=0.5)
    cfg = json.loads((d / "config.json").read_text())
    cfg["prune"]["prune_batches"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    _fake_run(root, "dense", rep="dense", acc=0.9)
    text = write_report(root).read_text()
    assert "prune.prune_batches" in text
    assert text.count("90.00 (reference)") == 2  # the dense run beside both settings


def test_a_repeated_run_is_counted_once_and_named(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp", acc=0.6)
    _fake_run(root, "ip0", acc=0.7)
    shutil.copytree(root / "ip0", root / "ip0-copy")
    text = write_report(root).read_text()
    assert "2 finished runs" in text and "1 left out (repeated runs)" in text
    assert "ip0-copy repeats the run in ip0" in text


def test_runs_on_two_image_folders_are_two_datasets(tmp_path):
    """``imagefolder`` is whatever folder ``data.root`` names: an SP run on one folder and
    an IP run on another were paired (or the second dropped as a repeat of the first). The
    data each read (``data_sha256``, else the folder) now tells them apart."""
    root = tmp_path / "sweep"
    for name, rep, folder, acc in [
        ("flowers_sp", "sp", "/data/flowers", 0.61),
        ("cars_ip", "ip", "/data/cars", 0.42),
        ("cars_ip_moved", "ip", "/mnt/cars", 0.42),  # the same data read from elsewhere
    ]:
        d = _fake_run(root, name, rep=rep, acc=acc)
        cfg = json.loads((d / "config.json").read_text())
        cfg["data"].update(dataset="imagefolder", root=folder)
        (d / "config.json").write_text(json.dumps(cfg))
        digest = ("f" if "flowers" in name else "c") * 64
        summary = {"test_acc": acc, "wall_time": 1.0, "data_sha256": digest}
        (d / "summary.json").write_text(json.dumps(summary))
    text = write_report(root).read_text()
    assert "differ in more than seed and representation (data)" in text
    assert "cars_ip_moved repeats the run in cars_ip" in text  # same data: one run
    assert "19.00" not in text  # never the difference of the two datasets


def test_a_one_seed_report_claims_no_spread_and_no_test(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp", acc=0.6, epochs=5)
    _fake_run(root, "ip0", acc=0.7, epochs=5)
    text = write_report(root).read_text()
    assert "± 0.00" not in text and "[5] epochs" not in text and "2 runs, 5 epochs" in text
    assert "corrected for the 0 rows" not in text and "no row could be tested" in text


# --- nothing is written outside the folder -----------------------------------------------


def test_a_report_symlink_cannot_carry_the_report_elsewhere(tmp_path, capsys):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp")
    _fake_run(root, "ip0")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "report.md").write_text("precious")
    (root / "report").symlink_to(elsewhere)
    assert main(["report", str(root)]) == 2
    assert "leads outside" in _one_line(capsys.readouterr().err)
    assert os.listdir(elsewhere) == ["report.md"]
    assert (elsewhere / "report.md").read_text() == "precious"


def test_symlinked_files_in_the_report_folder_are_replaced_not_written_through(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp")
    _fake_run(root, "ip0")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / "report").mkdir()
    for name in ("report.md", "digits_convnet_accuracy.png"):
        (root / "report" / name).symlink_to(victim)
    write_report(root)
    assert victim.read_text() == "precious"
    assert not (root / "report" / "report.md").is_symlink()


# --- bench and train --resume on a received folder ----------------------------------------


@pytest.mark.parametrize(
    "name, content",
    [
        ("config.json", DEEP),
        ("summary.json", DEEP),
        ("summary.json", "NUM_CLASSES"),
        ("config.json", "WIDE"),
    ],
)
@pytest.mark.parametrize("command", ["bench", "resume"])
def test_bench_and_resume_refuse_a_planted_file_in_one_line(copy, capsys, name, content, command):
    if content == "NUM_CLASSES":
        summary = json.loads((copy / name).read_text())
        content = json.dumps({**summary, "num_classes": 10**12})
    elif content == "WIDE":  # a model far larger than the model.pt beside it
        content = _widen(copy)
    (copy / name).write_text(content)
    if command == "bench":
        args = ["bench", str(copy), "--batch", "1", "--repeats", "1", "--quiet"]
    else:
        args = [*TRAIN, "--out", str(copy), "--resume"]
        if name == "config.json" and content != DEEP:
            args += ["--model-arg", "width=100000"]
    assert main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert name in line, line


def _widen(run):
    """config.json asks for a model of 10^5 channels; model.pt is re-tagged to match it (a
    planted folder can forge the tag), so only the size check stands in the way."""
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["model_args"] = ["width=100000"]
    state = read_model(run / "model.pt")
    write_model_state(run, state, config_hash(config_from_dict(cfg)))
    _forge_summary(run, config_hash(config_from_dict(cfg)))
    return json.dumps(cfg)


def _forge_summary(run, tag):
    """The summary names the forged run too (its hash is no seal, only a label)."""
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "config_hash": tag}))


def write_model_state(run, state, tag):
    from torch import nn

    holder = nn.Module()
    holder.state_dict = lambda: state
    write_model(run / "model.pt", holder, tag)


def test_the_report_names_a_model_that_does_not_fit_its_file(copy, capsys):
    (copy / "config.json").write_text(_widen(copy))
    report = write_report(copy)
    assert "do not belong together" in report.read_text()


def test_a_planted_claim_file_neither_hangs_nor_raises(tmp_path):
    from interspace_pruning.foundations.claims import read_owner

    (tmp_path / "deep").write_text(DEEP)
    assert read_owner(tmp_path / "deep") == {}
    os.mkfifo(tmp_path / "fifo")
    assert read_owner(tmp_path / "fifo") == {}  # was: blocked forever on the open
    assert read_owner(tmp_path / "absent") is None


def test_a_repeated_run_never_reaches_the_table(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root, "a_sp", rep="sp", acc=0.30)
    _fake_run(root, "b_ip", acc=0.40)
    _fake_run(root, "c_ip_copy", acc=0.90)  # the same run again, another result
    text = write_report(root).read_text()
    assert "c\\_ip\\_copy repeats the run in b\\_ip" in text or "c_ip_copy repeats" in text
    assert "| snip | 95% | 30.00 | 40.00 |" in text and "90.00" not in text


def _with(run_dir, section, **values):
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg.setdefault(section, {}).update(values)
    (run_dir / "config.json").write_text(json.dumps(cfg))


def test_dense_serves_each_setting_of_a_schedule_option(tmp_path):
    root = tmp_path / "sweep"
    for end in (0.5, 0.75):
        for rep, acc in (("sp", 0.6), ("ip", 0.7)):
            d = _fake_run(root, f"{rep}{end}", rep=rep, acc=acc)
            _with(d, "prune", method="gmp")
            _with(d, "gmp", gmp_end=end)
    _fake_run(root, "dense", rep="dense", acc=0.9)
    text = write_report(root).read_text()
    assert "gmp.gmp_end" in text and text.count("90.00 (reference)") == 2


def test_ip_without_pruning_is_not_split_by_its_unused_method(tmp_path):
    root = tmp_path / "sweep"
    for method in ("snip", "gmp"):
        d = _fake_run(root, f"ip0-{method}", rep="ip", acc=0.5 + (method == "gmp") * 0.05)
        _with(d, "prune", method=method, sparsity=0.0)
    _fake_run(root, "dense", rep="dense", acc=0.9)
    text = write_report(root).read_text()
    assert "differ in more than" not in text


def test_a_report_symlink_loop_is_one_line(tmp_path, capsys):
    root = tmp_path / "sweep"
    _fake_run(root, "sp0", rep="sp")
    (root / "report").symlink_to(root / "report")
    assert main(["report", str(root)]) == 2
    assert "cannot be resolved" in _one_line(capsys.readouterr().err)


def test_compare_resume_never_follows_a_planted_run_folder(tmp_path, capsys):
    out, elsewhere = tmp_path / "cmp", tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["compare", *FAST, "--threads", "1", "--epochs", "1", "--no-dense", "--out", str(out)]
    assert main(args) == 0
    shutil.rmtree(out / "ip")
    (out / "ip").symlink_to(elsewhere)
    assert main([*args, "--resume"]) == 2
    assert "leads outside" in _one_line(capsys.readouterr().err)
    assert list(elsewhere.iterdir()) == []


def test_planted_stretches_and_claims_never_hang(tmp_path):
    from interspace_pruning.experiments.stretches import epochs_done, read_stretches
    from interspace_pruning.foundations.claims import RunClaimedError
    from interspace_pruning.foundations.io import CorruptFileError

    os.mkfifo(tmp_path / "stretches.json")
    os.mkfifo(tmp_path / "metrics.jsonl")
    assert epochs_done(tmp_path) == 0  # was: blocked
    # a damaged record of machines is refused, never dropped: dropping it would let another
    # kind of machine continue the run and forget where its first epochs trained
    with pytest.raises(CorruptFileError, match="not a regular file.*delete it to go on") as e:
        read_stretches(tmp_path)
    assert "\n" not in str(e.value)
    for started in ("yesterday", 1e300, [1]):
        e = RunClaimedError(tmp_path / ".claim", {"host": "h", "pid": 1, "started": started})
        assert "an unreadable time" in str(e)


def test_out_chosen_by_the_caller_replaces_the_files(tmp_path):
    from interspace_pruning.experiments.sweep import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text("out: ../../elsewhere\ngrid:\n  train.seed: [0]\n")
    assert str(load_sweep(path).out) == "../../elsewhere"  # shown by --dry-run before any work
    assert str(load_sweep(path, out=tmp_path / "mine").out) == str(tmp_path / "mine")


def test_a_sparse_model_bounds_the_model_its_folder_asks_for(copy, capsys):
    """Without model.pt a run loads from its model.isp: a config asking for a model of 10^5
    channels beside it (the file's tag forged to match) is refused before it is built."""
    from interspace_pruning.experiments.results import finished_model, keep_sparse_model
    from interspace_pruning.experiments.runfiles import read_config
    from interspace_pruning.inference import export_sparse

    cfg, summary = (
        read_config(copy / "config.json"),
        json.loads((copy / "summary.json").read_text()),
    )
    model = finished_model(cfg, copy, summary)
    keep_sparse_model(cfg, copy, summary)
    (copy / "model.pt").unlink()
    bench = ["bench", str(copy), "--batch", "1", "--repeats", "1", "--quiet"]
    assert main(bench) == 0  # the honest folder loads from model.isp
    capsys.readouterr()
    wide = json.loads((copy / "config.json").read_text())
    wide["model"]["model_args"] = ["width=100000"]
    export_sparse(model, copy / "model.isp", tag=config_hash(config_from_dict(wide)))
    _forge_summary(copy, config_hash(config_from_dict(wide)))
    (copy / "config.json").write_text(json.dumps(wide))
    assert main(bench) == 2
    line = _one_line(capsys.readouterr().err)
    assert "model.isp" in line and "do not belong together" in line, line


def test_a_metrics_file_of_tiny_rows_is_counted_in_bounded_memory(tmp_path):
    """``metrics.jsonl`` of 64 MiB of ``{}`` lines: 21 million dicts (over 1 GB) if parsed
    whole. The campaign's status counts a received run's epochs from it: refused at the row
    bound, the file read once, its lines one at a time."""
    import tracemalloc

    from interspace_pruning.experiments.stretches import epochs_done

    (tmp_path / "metrics.jsonl").write_text("{}\n" * (21 * 2**20))
    tracemalloc.start()
    try:
        assert epochs_done(tmp_path) == 0  # more rows than any run writes: nothing counted
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 64 * 2**20, f"{peak / 2**20:.0f} MiB"
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\r\n\n{"epoch": 3}')
    assert epochs_done(tmp_path) == 3


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("none", "has no basis"),  # was a KeyError deep in the plot: the whole report lost
        ("wrong size", "has no basis"),  # was a RuntimeError from reshape
        ("other run", "holds the bases of another run"),
    ],
)
def test_a_bad_initial_basis_file_costs_a_picture_not_the_report(copy, tmp_path, damage, problem):
    """``bases_init.pt`` names its run and is checked against the model before its picture
    is drawn: a file without the basis, of another size or of another run is one line in
    the report, and the rest is written."""
    import torch

    from interspace_pruning.foundations.checkpoint import load_tensors, save_tensors

    saved = load_tensors(copy / "bases_init.pt")
    cfg = config_from_dict(json.loads((copy / "config.json").read_text()))
    assert saved["config_hash"] == config_hash(cfg)
    bases = {k: v for k, v in saved.items() if k.startswith("basis")}
    forged = {
        "none": {},
        "wrong size": {k: torch.zeros(5) for k in bases},
        "other run": {**bases, "config_hash": "0123456789"},
    }[damage]
    save_tensors(copy / "bases_init.pt", forged)
    text = write_report(copy, tmp_path / "report").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- no pictures from received"))
    assert problem in line
