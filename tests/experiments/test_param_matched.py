"""--param-matched: the SP control keeps as many weights as IP trains at the same --sparsity."""

import pytest

from interspace_pruning.experiments import PruneConfig, RunConfig
from interspace_pruning.experiments.run import run
from interspace_pruning.training import TrainConfig


def _cfg(rep: str, method: str, sparsity: float, matched: bool = False) -> RunConfig:
    return RunConfig(
        prune=PruneConfig(
            representation=rep, method=method, sparsity=sparsity, param_matched=matched
        ),
        train=TrainConfig(epochs=1),
    )


@pytest.mark.parametrize(("method", "sparsity"), [("snip", 0.98), ("gmp", 0.95)])
def test_sp_keeps_ips_coefficients_plus_its_basis_entries(tmp_path, method, sparsity):
    ip = run(_cfg("ip", method, sparsity), tmp_path / "ip", progress=False).summary
    sp = run(_cfg("sp", method, sparsity, True), tmp_path / "sp", progress=False).summary
    assert sp["nonzero"] == ip["nonzero"] + ip["basis_params"]
    assert sp["sparsity"] < ip["sparsity"] and sp["basis_params"] == 0


def test_a_matched_control_is_its_own_run_and_ordinary_runs_keep_their_folders():
    from interspace_pruning.foundations.hparams import config_hash

    plain, matched = _cfg("sp", "snip", 0.98), _cfg("sp", "snip", 0.98, True)
    assert config_hash(plain) != config_hash(matched)
    assert config_hash(plain) == config_hash(
        RunConfig(train=TrainConfig(epochs=1), prune=PruneConfig(representation="sp"))
    )


@pytest.mark.parametrize(
    ("rep", "method", "message"),
    [("ip", "snip", "use it with --representation sp"), ("sp", "imp", "not imp")],
)
def test_bad_combinations_are_one_line(rep, method, message):
    with pytest.raises(ValueError, match=message):
        PruneConfig(representation=rep, method=method, param_matched=True)
