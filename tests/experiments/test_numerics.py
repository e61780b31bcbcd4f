"""Every summary.json records how its numbers were computed (TF32, cuDNN, autocast, versions)."""

import torch

from interspace_pruning.experiments import RunConfig
from interspace_pruning.experiments.run import run
from interspace_pruning.training import TrainConfig
from interspace_pruning.training.device import numerics

KEYS = {
    "device",
    "precision",
    "autocast_dtype",
    "tf32_matmul",
    "tf32_cudnn",
    "cudnn_benchmark",
    "cudnn_deterministic",
    "deterministic_algorithms",
    "float32_matmul_precision",
    "torch",
    "cuda",
    "cudnn",
}


def test_a_run_summary_records_its_numerics(tmp_path):
    result = run(RunConfig(train=TrainConfig(epochs=1)), tmp_path / "r", progress=False)
    got = result.summary["numerics"]
    assert set(got) == KEYS
    assert got["precision"] == "fp32" and got["autocast_dtype"] is None
    assert got["torch"] == torch.__version__ and got["device"] == "cpu"
    assert got["tf32_matmul"] == torch.backends.cuda.matmul.allow_tf32


def test_the_autocast_dtype_and_flags_are_read_not_assumed():
    before = torch.backends.cudnn.deterministic
    try:
        torch.backends.cudnn.deterministic = not before
        got = numerics(torch.device("cpu"), "bf16")
        assert got["autocast_dtype"] == "bfloat16" and got["cudnn_deterministic"] is (not before)
        assert numerics(torch.device("cpu"), "fp16")["autocast_dtype"] == "float16"
    finally:
        torch.backends.cudnn.deterministic = before
