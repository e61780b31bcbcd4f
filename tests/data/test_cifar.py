import os
import pickle

import numpy as np
import pytest
import torch

from interspace_pruning import data
from interspace_pruning.data import DataError
from interspace_pruning.data.safe_pickle import UnsafePickleError, safe_load


def test_loads_the_python_pickle_layout(cifar_root):
    ds = data.get("cifar10", cifar_root)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.classes[3] == "class3" and ds.augment == "crop-flip"
    # the root may also be the batches folder itself
    same = data.get("cifar10", cifar_root / "cifar-10-batches-py")
    assert torch.equal(same.train_x, ds.train_x)
    raw = pickle.loads((cifar_root / "cifar-10-batches-py" / "data_batch_2").read_bytes())
    assert np.array_equal(ds.train_x[20:40].reshape(20, -1).numpy(), raw[b"data"])


def test_cifar100_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 10)):
        d = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [0] * n,
        }
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    ds = data.get("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.train_x.shape == (30, 3, 32, 32)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_restricted_unpickler_rejects_code(tmp_path, cifar_root):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": []}, protocol=2)
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        safe_load(payload)
    assert not marker.exists()
    # through the loader: one DataError naming the file, nothing executed
    (cifar_root / "cifar-10-batches-py" / "data_batch_1").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_1.*refusing") as e:
        data.get("cifar10", cifar_root)
    assert not marker.exists()
    assert "\n" not in str(e.value)
    # builtins such as eval are refused as well
    with pytest.raises(UnsafePickleError):
        safe_load(b"cbuiltins\neval\n(S'1+1'\ntR.")


def test_corrupt_and_missing_cifar(cifar_root, tmp_path):
    with pytest.raises(
        DataError, match="cifar10 not found.*data_batch_1 is missing.*--download.*cifar-10-python"
    ) as missing:
        data.get("cifar10", tmp_path / "empty")
    assert "shared" not in str(missing.value)  # users' instructions, not our workspace's
    f = cifar_root / "cifar-10-batches-py" / "test_batch"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match="corrupt or unsafe data file .*test_batch"):
        data.get("cifar10", cifar_root)
    f.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="expected uint8 images of 3x32x32"):
        data.get("cifar10", cifar_root)
