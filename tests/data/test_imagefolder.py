import numpy as np
import pytest
import torch
from PIL import Image

from interspace_pruning import data
from interspace_pruning.data import DataError
from interspace_pruning.experiments import DataConfig, ModelConfig, PruneConfig, RunConfig, run
from interspace_pruning.training import TrainConfig

CLASSES = ["cat", "dog", "owl"]


def _img(path, color, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[..., CLASSES.index(color) % 3] = 200
    arr[: size[1] // 2, : size[0] // 3] = 30  # some structure, so crops differ
    Image.fromarray(arr).save(path)


def make_imagenet_layout(root, per_class=4):
    for c in CLASSES:
        for i in range(per_class):
            _img(root / "train" / c / f"{c}{i}.JPEG", c)
            if i < 2:
                _img(root / "val" / c / f"v{c}{i}.png", c)
    return root


def make_tiny_layout(root, per_class=4):
    lines = []
    for c in CLASSES:
        for i in range(per_class):
            _img(root / "train" / c / "images" / f"{c}_{i}.JPEG", c, (64, 64))
        _img(root / "val" / "images" / f"val_{c}.JPEG", c, (64, 64))
        lines.append(f"val_{c}.JPEG\t{c}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_imagenet_layout(tmp_path):
    ds = data.get("imagefolder", make_imagenet_layout(tmp_path / "inet"), image_size=32, workers=0)
    assert ds.classes == CLASSES and ds.num_classes == 3
    assert len(ds.train_samples) == 12 and len(ds.test_samples) == 6
    x, y = next(ds.test_batches(4))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert ds.test_y.tolist() == [0, 0, 1, 1, 2, 2]


def test_tiny_imagenet_layout(tmp_path):
    ds = data.get("tiny-imagenet", make_tiny_layout(tmp_path / "tiny"), workers=0)
    assert ds.image_shape == (3, 64, 64)
    assert sorted(ds.test_y.tolist()) == [0, 1, 2]


def test_a_padded_annotation_file_is_refused_without_reading_it_whole(tmp_path):
    """A received folder's val_annotations.txt padded to gigabytes (sparse: no disk, tiny
    in a tarball) is one line, read no further than its bound."""
    root = make_tiny_layout(tmp_path / "tiny", per_class=1)
    with open(root / "val" / "val_annotations.txt", "r+b") as f:
        f.truncate(2**31)
    with pytest.raises(DataError, match="val_annotations.txt is larger than 16 MiB.*Tiny-Imag"):
        data.get("tiny-imagenet", root, workers=0)


def test_a_fifo_or_a_path_in_the_annotations_is_refused_without_hanging(tmp_path):
    """A received Tiny-ImageNet folder: val_annotations.txt itself a FIFO, or naming a FIFO
    in val/images (the loader blocked forever, SIGTERM too), or a path that reads
    elsewhere (``../``, absolute): each one line, nothing opened that would block."""
    import os
    import threading

    def error(root) -> str:
        errors: list[str] = []

        def load() -> None:
            try:
                data.get("tiny-imagenet", root, workers=0)
            except DataError as e:
                errors.append(str(e))

        worker = threading.Thread(target=load, daemon=True)  # a hang fails the test
        worker.start()
        worker.join(timeout=20)
        assert errors and "\n" not in errors[0]
        return errors[0]

    root = make_tiny_layout(tmp_path / "tiny", per_class=1)
    listing = root / "val" / "val_annotations.txt"
    text = listing.read_text()
    os.mkfifo(root / "val" / "images" / "fifo.JPEG")
    _img(tmp_path / "outside.JPEG", "cat", (64, 64))
    for name in ["fifo.JPEG", "../../outside.JPEG", str(tmp_path / "outside.JPEG"), ".."]:
        listing.write_text(text + f"{name}\tdog\t0\t0\t63\t63\n")
        assert f"{name[:60]!r} is not an image file in" in error(root), name
    listing.unlink()
    os.mkfifo(listing)  # not a regular file: never opened, read as the other layout
    error(root)


def test_augmentation_is_seeded_and_independent_of_workers(tmp_path):
    root = make_imagenet_layout(tmp_path / "inet")
    a = data.get("imagefolder", root, image_size=24, workers=0)
    b = data.get("imagefolder", root, image_size=24, workers=2)
    xa, ya = next(a.train_batches(6, torch.Generator().manual_seed(1)))
    xb, yb = next(b.train_batches(6, torch.Generator().manual_seed(1)))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    xc, _ = next(a.train_batches(6, torch.Generator().manual_seed(2)))
    assert not torch.equal(xa, xc)
    plain, _ = next(a.train_batches(6, torch.Generator().manual_seed(1), augment=False))
    assert not torch.equal(plain, xa)  # augmentation really happened


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="needs train/<class>"):
        data.get("imagefolder", tmp_path / "missing")
    with pytest.raises(DataError, match="needs --root"):
        data.get("imagefolder")
    root = make_imagenet_layout(tmp_path / "bad")
    (root / "train" / "cat" / "cat0.JPEG").write_bytes(b"not an image")
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    with pytest.raises(DataError, match="corrupt image .*cat0.JPEG"):
        list(ds.train_batches(12, torch.Generator()))
    _img(root / "val" / "eel" / "x.png", "cat")
    with pytest.raises(DataError, match="classes missing from train"):
        data.get("imagefolder", root)


def test_train_the_imagenet_resnet18_on_a_tiny_folder(tmp_path):
    """The whole run on an image folder. ResNet-50's bottleneck blocks get a pruned training
    step in tests/models/test_models.py: a whole run of it took 35-70 s of the suite."""
    root = make_imagenet_layout(tmp_path / "inet")
    cfg = RunConfig(
        data=DataConfig(dataset="imagefolder", root=str(root), image_size=32, workers=0),
        model=ModelConfig(model="resnet18"),
        prune=PruneConfig(representation="ip", method="snip", sparsity=0.9, prune_batches=1),
        train=TrainConfig(epochs=1, batch_size=4, lr=0.01),
    )
    result = run(cfg, tmp_path / "run", progress=False)
    assert result.summary["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert result.summary["num_classes"] == 3
    assert (tmp_path / "run" / "summary.json").is_file()
