"""examples/own_loop.py runs as shipped: RigL in IP in a plain loop, folded and exported."""

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_loop.py"


def test_own_loop_example(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("own_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--epochs", "3", "--out", str(tmp_path)])
    assert abs(result["sparsity"] - 0.9) < 1e-3
    assert result["updates"] > 0
    assert result["folded_matches"] and result["reloaded_matches"]
    assert (tmp_path / "mynet.isp").stat().st_size == result["bytes"]
    assert result["accuracy"] > 0.3  # learned something at 90% sparsity (chance: 0.1)
    assert "mask updates" in capsys.readouterr().out
