import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.inference import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_folded_model_exports_to_onnx(representation, tmp_path):
    torch.manual_seed(0)
    model = ip.models.get("resnet20")
    if representation == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", 0.9)
    model.eval()
    path = export_onnx(model, tmp_path / "m.onnx", (3, 32, 32))
    session = ort.InferenceSession(str(path))
    x = torch.randn(3, 3, 32, 32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert torch.allclose(torch.from_numpy(y), model(x).detach(), atol=1e-4, rtol=1e-4)
