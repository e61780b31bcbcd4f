import json

import pytest

from interspace_pruning.cli import main
from interspace_pruning.foundations.io import read_jsonl

FAST = ["--train-subset", "300", "--test-subset", "100", "--epochs", "2", "--quiet"]


def test_compare_prints_and_saves_the_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *FAST, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| repr | test acc |" in text and "| sp |" in text and "| ip |" in text
    assert "| dense |" in text and (
        "IP ahead" in text or "SP ahead" in text or "tie" in text or "mixed" in text
    )
    saved = json.loads((out / "compare.json").read_text())
    assert [r["representation"] for r in saved["rows"]] == ["sp", "ip", "dense"]
    sp, ip_row = saved["rows"][0], saved["rows"][1]
    assert sp["nonzero"] == ip_row["nonzero"]  # equal budgets
    assert ip_row["basis_params"] > 0 and sp["basis_params"] == 0
    assert (out / "compare.md").read_text().startswith("| repr |")
    assert saved["winner"] in ("ip", "sp", "tie")


def test_compare_no_dense(tmp_path, capsys):
    assert main(["compare", *FAST, "--no-dense", "--method", "random", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [r["representation"] for r in rows] == ["sp", "ip"]


def test_train_writes_config_metrics_and_summary(tmp_path, capsys):
    args = ["train", *FAST, "--representation", "sp", "--method", "magnitude", "--sparsity", "0.9"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["prune"]["method"] == "magnitude" and cfg["train"]["epochs"] == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert "sp: test acc" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "--sparsity", "1.5"], "sparsity must be in [0, 1)"),
        (["train", "--method", "obd"], "invalid choice: 'obd'"),
        (["train", "--epochs", "ten"], "invalid int value: 'ten'"),
        (["train", "--dataset", "mnist", "--root", "/nonexistent"], "mnist not found"),
        (["compare", "--basis", "haar"], "invalid choice: 'haar'"),
        (["train", "--prune-batches", "0"], "--prune-batches must be >= 1"),
    ],
)
def test_bad_input_is_one_line(args, match, capsys):
    try:
        code = main(args)
    except SystemExit as e:  # argparse errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_train_accepts_methods_registered_after_import(tmp_path, capsys):
    """The CLI reads --method choices from the registries when it runs."""
    import torch

    from interspace_pruning.pruning import register_method
    from interspace_pruning.pruning.registry import _METHODS

    name = "cli-test-abs-plus-one"
    with pytest.raises(SystemExit) as refused:
        main(["train", *FAST, "--method", name, "--out", str(tmp_path / "x")])
    assert refused.value.code == 2
    assert f"invalid choice: '{name}'" in capsys.readouterr().err

    @register_method(name)
    def scores(ctx):
        return [p.detach().abs() + torch.rand_like(p) for p in ctx.params]

    try:
        args = ["train", *FAST, "--epochs", "1", "--method", name, "--sparsity", "0.8"]
        assert main([*args, "--out", str(tmp_path / "run")]) == 0
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["sparsity"] == pytest.approx(0.8, abs=1e-4)
    finally:
        del _METHODS[name]
