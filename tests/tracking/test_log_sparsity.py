"""ip.log_sparsity: the pruning state, from any loop, to the tracker that loop already uses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import interspace_pruning as ip


def pruned_net(rep: str = "ip") -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    ip.prepare(net, rep)
    ip.prune(net, "magnitude", 0.9)
    return net


def test_values_match_the_sparsity_report():
    net = pruned_net()
    got = []
    values = ip.log_sparsity(lambda v, step: got.append((step, v)), net, 7)
    report = ip.sparsity_report(net)
    assert got == [(7, values)]
    assert values["sparsity"] == pytest.approx(report.sparsity)
    assert values["nonzero"] == report.nonzero and values["basis_params"] == report.basis_params
    layers = {k: v for k, v in values.items() if k.startswith("layer_sparsity/")}
    assert layers == {f"layer_sparsity/{r.name}": r.sparsity for r in report.layers}


def test_extra_values_go_with_them():
    got = {}
    ip.log_sparsity(lambda v, s: got.update(v), pruned_net("sp"), 1, extra={"mask_updates": 3})
    assert got["mask_updates"] == 3


def test_to_a_tensorboard_summary_writer(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    net = pruned_net()
    with SummaryWriter(tmp_path) as w:
        ip.log_sparsity(w, net, 3)
    ea = EventAccumulator(str(tmp_path))
    ea.Reload()
    (event,) = ea.Scalars("sparsity")
    assert event.step == 3 and event.value == pytest.approx(ip.sparsity_report(net).sparsity)


def test_to_the_mlflow_module(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    net = pruned_net()
    with mlflow.start_run() as run:
        ip.log_sparsity(mlflow, net, 5)
    (m,) = MlflowClient(uri).get_metric_history(run.info.run_id, "sparsity")
    assert (m.step, m.value) == (5, pytest.approx(ip.sparsity_report(net).sparsity))


def test_a_plain_model_reads_as_dense_and_is_left_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    values = ip.log_sparsity(lambda v, s: None, net, 0)
    assert values["sparsity"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_an_object_it_cannot_log_to_is_one_line():
    with pytest.raises(TypeError, match="cannot log to a object"):
        ip.log_sparsity(object(), pruned_net(), 0)
