import gzip
import io
import tarfile

import numpy as np
import pytest
import torch

from interspace_pruning import data
from interspace_pruning.data import DataError, idx

from .conftest import make_idx_dataset


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_loads_idx_files(name, tmp_path):
    arrays = make_idx_dataset(tmp_path)
    ds = data.get(name, tmp_path)
    assert ds.train_x.shape == (40, 1, 28, 28) and ds.test_x.shape == (20, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes == 10 and len(ds.classes) == 10
    x, y = next(ds.test_batches(8))
    assert x.dtype == torch.float32 and abs(float(ds.normalise(ds.train_x).mean())) < 1e-4


def test_uncompressed_idx_files(tmp_path):
    make_idx_dataset(tmp_path, compress=False)
    assert data.get("mnist", tmp_path).train_x.shape[0] == 40


def test_missing_files_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as e:
        data.get("fashion-mnist", tmp_path / "nowhere")
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz is missing" in msg and "nowhere" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--download" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "corrupt data file"),
        (
            lambda p: p.write_bytes(gzip.compress(b"\x01\x02\x03\x04rubbish")),
            "not an unsigned-byte",
        ),
        (
            lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-5])),
            "header says",
        ),
    ],
)
def test_corrupt_files(tmp_path, damage, expected):
    make_idx_dataset(tmp_path)
    damage(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match=expected) as e:
        data.get("mnist", tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(e.value)


def test_mismatched_images_and_labels(tmp_path):
    make_idx_dataset(tmp_path)
    make_idx_dataset(tmp_path / "other", n_train=30)
    (tmp_path / "other" / "train-labels-idx1-ubyte.gz").replace(
        tmp_path / "train-labels-idx1-ubyte.gz"
    )
    with pytest.raises(DataError, match="do not match labels"):
        data.get("mnist", tmp_path)


def test_download_fetches_and_validates(tmp_path, monkeypatch):
    """--download against a local mirror (file:// URLs): same code path as the network."""
    make_idx_dataset(tmp_path / "mirror")
    monkeypatch.setitem(idx.SOURCES, "mnist", [(tmp_path / "mirror").as_uri() + "/"])
    ds = data.get("mnist", tmp_path / "cache", download=True)
    assert ds.train_x.shape[0] == 40
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        p.name for p in (tmp_path / "mirror").iterdir()
    )
    monkeypatch.setitem(idx.SOURCES, "mnist", [(tmp_path / "empty").as_uri() + "/"])
    with pytest.raises(DataError, match="could not download"):
        data.get("mnist", tmp_path / "cache2", download=True)
    assert not list((tmp_path / "cache2").glob("*"))  # no half-written files left


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        data.get("imagenet")


def test_cifar_download_extracts_only_the_dataset_folder(tmp_path, monkeypatch):
    from interspace_pruning.data import cifar

    from .conftest import make_cifar10

    make_cifar10(tmp_path / "src")
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        info = tarfile.TarInfo("../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    spec = dict(cifar.LAYOUT["cifar10"], url=archive.as_uri())
    monkeypatch.setitem(cifar.LAYOUT, "cifar10", spec)
    ds = data.get("cifar10", tmp_path / "cache", download=True)
    assert ds.train_x.shape == (100, 3, 32, 32)
    assert not (tmp_path / "escape.txt").exists()
