"""``--model package.module:callable``: building, argument parsing, errors, and the CLI."""

import json

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.cli import main
from interspace_pruning.experiments.config import ModelConfig
from interspace_pruning.models import parse_model_args, parse_value

BUILDER = "tests.models.user_builder"


def test_values_are_typed():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("0.25") == 0.25 and parse_value("1e-3") == 1e-3
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("none") is None
    assert parse_value("resnet50") == "resnet50"
    assert parse_value("'123'") == "123" and parse_value('"true"') == "true"
    assert parse_model_args(["tiny", "width=6", "bias=true"]) == (
        ["tiny"],
        {"width": 6, "bias": True},
    )
    for bad, match in [
        (["a b=1"], "Python name"),
        (["w=1", "w=2"], "given twice"),
        (["w=1", "tiny"], "positional value must come before"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_model_args(bad)


def test_builders_get_classes_and_channels_they_accept():
    model = ip.models.get(f"{BUILDER}:build", 7, 1, width=6, bias=True)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 7)
    assert model.stem[0].in_channels == 1 and model.stem[0].out_channels == 6
    assert bool((model.head.bias == 0.5).all())
    cls = ip.models.get(f"{BUILDER}:TinyResNet", 4, 2)
    assert cls(torch.randn(1, 2, 8, 8)).shape == (1, 4)
    assert ip.models.get(f"{BUILDER}:Nets.small", 3, 1).head.out_features == 3


def test_timm_style_factory():
    # name= fills the first required parameter (model_name); num_classes goes through
    # **kwargs; in_chans is not guessed through **kwargs, so a mismatch is a clear error
    cfg = ModelConfig(f"{BUILDER}:create", ("name=tiny", "in_chans=1"))
    model = cfg.build(num_classes=5, in_channels=1)
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 5) and model.head.in_features == 4
    with pytest.raises(ValueError, match="first conv takes 3 input channels.*in_chans=1"):
        ModelConfig(f"{BUILDER}:create", ("name=small",)).build(10, 1)
    positional = ModelConfig(f"{BUILDER}:create", ("small", "in_chans=1")).build(10, 1)
    assert positional.head.in_features == 8


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("nonexistent_pkg_xyz.nets:build", {}, "cannot import 'nonexistent_pkg_xyz.nets'"),
        (f"{BUILDER}:missing", {}, "has no attribute 'missing'"),
        (f"{BUILDER}:NOT_CALLABLE", {}, "is a int, not a function or class"),
        (f"{BUILDER}:not_a_model", {}, "returned an object of type int, not a torch.nn.Module"),
        (f"{BUILDER}:build", {"depth": 3}, "unexpected keyword argument 'depth'"),
        ("torch.nn:", {}, "bad model import path"),
        ("resnet19", {}, "unknown model 'resnet19'"),
    ],
)
def test_errors_are_one_line(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        ip.models.get(name, 10, 3, **kwargs)
    assert "\n" not in str(info.value)


def test_config_round_trips_and_accepts_yaml_mappings():
    cfg = ModelConfig(f"{BUILDER}:build", ["width=6"])
    assert cfg.model_args == ("width=6",)
    from_yaml = ModelConfig(f"{BUILDER}:create", {"name": "tiny", "in_chans": 1, "tag": "7"})
    assert from_yaml.model_args == ("name=tiny", "in_chans=1", "tag='7'")
    assert parse_model_args(from_yaml.model_args)[1] == {"name": "tiny", "in_chans": 1, "tag": "7"}
    with pytest.raises(ValueError, match="unknown model"):
        ModelConfig("not-a-model")


def test_cli_trains_prunes_and_reports_a_user_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        f"{BUILDER}:build",
        "--model-arg",
        "width=6",
        "--model-arg",
        "bias=false",
        "--representation",
        "ip",
        "--method",
        "snip",
        "--sparsity",
        "0.8",
        "--train-subset",
        "200",
        "--test-subset",
        "60",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["model_args"] == ["width=6", "bias=false"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.8, abs=1e-3)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0  # the tables need no model; the pictures do
    report = (out / "report" / "report.md").read_text()
    assert f"## digits / {BUILDER}:build" in report
    assert "never imported" in report and "filter basis" not in report
    assert main(["report", str(out), "--trust-model-imports"]) == 0  # the user vouches
    report = (out / "report" / "report.md").read_text()
    assert "never imported" not in report and "filter basis" in report
    capsys.readouterr()
    bad = ["train", "--model", f"{BUILDER}:build", "--model-arg", "depth=2", "--quiet"]
    assert main([*bad, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unexpected keyword argument 'depth'" in err and "\n" not in err
