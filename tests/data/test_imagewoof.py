"""Imagewoof layouts, class names, the decode cache and its file, on tiny generated folders."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
import torch

from interspace_pruning import data
from interspace_pruning.data import DataError
from interspace_pruning.data import imagefolder as imf

from .test_imagefolder import CLASSES, _img, make_imagenet_layout

WNIDS = sorted(imf.IMAGEWOOF_CLASSES)


def make_woof(root, per_class=2, size=(20, 16)):
    """The Imagewoof tree (10 wnid folders) with ``per_class`` training images a class."""
    for k, w in enumerate(WNIDS):
        colour = CLASSES[k % 3]
        for i in range(per_class):
            _img(root / "train" / w / f"{w}_{i}.JPEG", colour, size)
        _img(root / "val" / w / f"ILSVRC_{w}.JPEG", colour, size)
    return root


@pytest.fixture(autouse=True)
def _default_cache(monkeypatch):
    monkeypatch.delenv(imf.CACHE_ENV, raising=False)


@pytest.fixture
def decodes(monkeypatch):
    """The number of images decoded so far, counted through :func:`imf.decode_images`."""
    count = [0]
    real = imf.decode_images

    def counting(paths, side, threads=1):
        count[0] += len(paths)
        return real(paths, side, threads)

    monkeypatch.setattr(imf, "decode_images", counting)
    return count


def _batch(ds, seed=1, n=6):
    return next(ds.train_batches(n, torch.Generator().manual_seed(seed)))


def test_official_release_layout(tmp_path):
    root = tmp_path / "woof"
    make_woof(root / "imagewoof2-160")
    (root / "imagewoof2-160" / "noisy_imagewoof.csv").write_text("path,noisy_labels_0\n")
    ds = data.get("imagewoof", root, workers=0)
    assert ds.root == root / "imagewoof2-160" and ds.size == 128
    assert ds.classes == WNIDS and ds.num_classes == 10
    assert ds.class_names[:2] == ["Shih-Tzu", "Rhodesian ridgeback"]
    assert ds.class_names[-1] == "dingo" and ds.crop_scale == (0.35, 1.0)
    assert len(ds.train_samples) == 20 and ds.test_y.tolist() == list(range(10))
    x, y = next(ds.test_batches(4))
    assert x.shape == (4, 3, 128, 128) and x.dtype == torch.float32
    assert data.image_shape("imagewoof") == (3, 128, 128)


def test_written_tree_with_classes_txt(tmp_path):
    root = make_woof(tmp_path / "woof")
    # another order than the labels': names are matched by wnid, labels stay sorted wnids
    lines = [f"{w}\tbreed {w[-3:]}" for w in reversed(WNIDS)]
    (root / "classes.txt").write_text("\n".join(lines) + "\n")
    ds = data.get("imagewoof", root, image_size=16, workers=0)
    assert ds.classes == WNIDS
    assert ds.class_names == [f"breed {w[-3:]}" for w in WNIDS]


def test_generic_folder_names_and_a_bad_classes_txt(tmp_path):
    root = make_imagenet_layout(tmp_path / "inet", per_class=2)
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    assert ds.class_names == CLASSES and ds.crop_scale == (0.08, 1.0)
    (root / "classes.txt").write_text("cat\tfelis\neel\tan eel\n")
    with pytest.raises(DataError, match=r"classes.txt line 2 .*not 'folder<TAB>name'") as e:
        data.get("imagefolder", root, workers=0)
    assert "\n" not in str(e.value)


def test_missing_and_wrong_folders_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INTERSPACE_DATA", raising=False)
    with pytest.raises(DataError, match=r"Imagewoof not found in data/imagewoof: .*imagewoof2-160"):
        data.get("imagewoof")
    with pytest.raises(DataError, match="fastai/imagenette") as e:
        data.get("imagewoof", tmp_path / "nowhere")
    assert "\n" not in str(e.value)
    inet = make_imagenet_layout(tmp_path / "inet", per_class=1)
    with pytest.raises(DataError, match="is not Imagewoof.*--dataset imagefolder"):
        data.get("imagewoof", inet)
    both = tmp_path / "both"
    make_woof(both / "imagewoof2-160", per_class=1)
    make_woof(both / "imagewoof2-320", per_class=1)
    with pytest.raises(DataError, match="several image folders.*imagewoof2-160"):
        data.get("imagewoof", both)


def test_decoded_once_per_run_and_the_file_reused(tmp_path, decodes):
    root = make_imagenet_layout(tmp_path / "inet", per_class=2)
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    first = _batch(ds)
    _batch(ds, seed=2)
    list(ds.test_batches(4))
    list(ds.train_eval_batches(4))
    assert decodes[0] == 6 + 6  # each image of both splits, once
    files = sorted(p.name for p in (root / imf.CACHE_FOLDER).iterdir())
    assert files == ["train-18px.npz", "val-18px.npz"]  # 18 = round(16 / 0.875)
    again = data.get("imagefolder", root, image_size=16, workers=0)
    assert torch.equal(_batch(again)[0], first[0])
    assert decodes[0] == 12  # the next run read the file
    # a subset is served from the whole split's file, and leaves it as it is
    stamp = (root / imf.CACHE_FOLDER / "train-18px.npz").stat().st_mtime_ns
    part = data.get("imagefolder", root, image_size=16, workers=0, train_subset=3)
    _batch(part, n=3)
    assert decodes[0] == 12
    assert (root / imf.CACHE_FOLDER / "train-18px.npz").stat().st_mtime_ns == stamp


def test_a_changed_or_added_image_rebuilds_the_cache(tmp_path, decodes):
    root = make_imagenet_layout(tmp_path / "inet", per_class=2)
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    before = ds.decoded("train")
    changed = root / "train" / "dog" / "dog1.JPEG"
    _img(changed, "owl", (24, 18))
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    after = ds.decoded("train")
    assert decodes[0] == 12  # rebuilt, not trusted
    key = "train/dog/dog1.JPEG"
    assert not np.array_equal(before.image(before.index[key]), after.image(after.index[key]))
    _img(root / "train" / "cat" / "cat9.JPEG", "cat")
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    assert len(ds.decoded("train")) == 7 and decodes[0] == 19
    assert len(data.get("imagefolder", root, image_size=16, workers=0).decoded("train")) == 7
    assert decodes[0] == 19  # and the rebuilt file is used from then on


def _damaged(good: dict, how: str) -> bytes:
    """A cache file that matches its folder (listing and settings: ``good``, a real one's
    arrays) but must never be used: not a zip, a pickled object array, a pixel buffer short
    of its offsets, compressed arrays (a few MB of zeros can declare GBs: refused before they
    are inflated), a pixel buffer far larger than its images (a sparse file of GBs was read
    whole), settings nested 100,000 deep (RecursionError)."""
    if how == "garbage":
        return b"not a cache"
    buf = io.BytesIO()
    pixels = good["pixels"]
    if how == "compressed":
        np.savez_compressed(buf, **good)
        return buf.getvalue()
    changed = {
        "pickle": {"pixels": np.array([object()] * len(pixels), dtype=object)},
        "offsets": {"pixels": pixels[:-2]},
        "oversized": {"pixels": np.concatenate([pixels, np.zeros(2**20, np.uint8)])},
        "deep": {"meta": np.array("[" * 100_000)},
    }[how]
    np.savez(buf, **{**good, **changed})
    return buf.getvalue()


DAMAGE = ["garbage", "pickle", "offsets", "compressed", "oversized", "deep"]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_cache_file_is_named_in_one_line_and_rebuilt(tmp_path, decodes, how):
    root = make_imagenet_layout(tmp_path / "inet", per_class=2)
    data.get("imagefolder", root, image_size=16, workers=0).decoded("train")
    path = root / imf.CACHE_FOLDER / "train-18px.npz"
    with np.load(path, allow_pickle=False) as z:
        good = {k: z[k] for k in z.files}
    path.write_bytes(_damaged(good, how))
    decodes[0] = 0
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    with pytest.warns(RuntimeWarning, match="damaged decode cache .*train-18px.npz") as rec:
        x, _ = _batch(ds)
    assert x.shape == (6, 3, 16, 16) and decodes[0] == 6
    assert all("\n" not in str(w.message) for w in rec)
    if how == "oversized":  # refused before the buffer is read
        assert any("its pixel buffer holds" in str(w.message) for w in rec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file is whole again
        data.get("imagefolder", root, image_size=16, workers=0).decoded("train")
    assert decodes[0] == 6


def test_a_cache_file_that_is_a_symlink_is_never_read_through(tmp_path, decodes):
    """A received data folder's cache file linked to a FIFO would hang the read, and one
    linked elsewhere is not this folder's: it is rebuilt, and the link replaced."""
    root = make_imagenet_layout(tmp_path / "inet", per_class=2)
    data.get("imagefolder", root, image_size=16, workers=0).decoded("train")
    path = root / imf.CACHE_FOLDER / "train-18px.npz"
    elsewhere = tmp_path / "elsewhere.npz"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    with pytest.warns(RuntimeWarning, match="damaged decode cache .*not a regular file"):
        data.get("imagefolder", root, image_size=16, workers=0).decoded("train")
    assert decodes[0] == 12 and not path.is_symlink() and elsewhere.is_file()


def test_a_cache_folder_that_is_a_symlink_is_left_alone(tmp_path, decodes):
    """The cache never writes or cleans up where a received ``.interspace-cache`` link
    leads: it keeps the images in memory and says so in one line."""
    root = make_imagenet_layout(tmp_path / "inet", per_class=2)
    victim = tmp_path / "victim"
    victim.mkdir()
    old = victim / ".precious.npz.x.tmp"
    old.write_text("someone else's\n")
    os.utime(old, (1.0, 1.0))
    (root / imf.CACHE_FOLDER).symlink_to(victim)
    with pytest.warns(RuntimeWarning, match="is a symlink or not a folder: .* memory only"):
        ds = data.get("imagefolder", root, image_size=16, workers=0)
    x, _ = _batch(ds)
    assert ds.cache == "memory" and x.shape == (6, 3, 16, 16)
    assert sorted(p.name for p in victim.iterdir()) == [old.name]


def test_an_unwritable_cache_folder_warns_and_goes_on(tmp_path, decodes):
    root = make_imagenet_layout(tmp_path / "inet", per_class=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ds = imf.load_image_folder("imagefolder", root, 16, workers=0, cache_dir=blocker)
    with pytest.warns(RuntimeWarning, match="could not write the decode cache"):
        x, _ = _batch(ds, n=3)
    assert x.shape == (3, 3, 16, 16)


def test_cache_modes_give_the_same_batches_per_seed(tmp_path, monkeypatch, decodes):
    root = tmp_path / "inet"
    for c in CLASSES:  # no larger than the stored side (18): kept as decoded
        for i in range(3):
            _img(root / "train" / c / f"{c}{i}.JPEG", c, (20, 15))
        _img(root / "val" / c / "v.png", c, (18, 18))
    _img(root / "train" / "owl" / "wide.png", "owl", (60, 24))  # shrunk for the cache
    by_mode = {}
    for mode in ("none", "memory", "file"):
        monkeypatch.setenv(imf.CACHE_ENV, mode)
        ds = data.get("imagefolder", root, image_size=16, workers=0)
        assert ds.cache == mode
        by_mode[mode] = ds
    plain, cached = by_mode["none"], by_mode["memory"]
    assert plain.decoded("train") is None and decodes[0] == 0
    assert not (root / imf.CACHE_FOLDER).exists()  # memory and none write no file
    x1, y1 = _batch(cached, n=9)
    assert torch.equal(x1, _batch(by_mode["file"], n=9)[0])
    assert not torch.equal(x1, _batch(cached, seed=2, n=9)[0])
    x0, y0 = _batch(plain, n=9)
    assert torch.equal(y0, y1)
    # identical crops from the cache wherever an image is no larger than the stored side
    same = [i for i, (p, _) in enumerate(plain.train_samples) if p.name != "wide.png"]
    order = torch.randperm(10, generator=torch.Generator().manual_seed(1))[:9].tolist()
    rows = [r for r, i in enumerate(order) if i in same]
    assert torch.equal(x0[rows], x1[rows])
    # evaluation crops are identical for every image (the cache shrinks as evaluation does)
    xe0 = torch.cat([x for x, _ in plain.train_eval_batches(4)])
    xe1 = torch.cat([x for x, _ in cached.train_eval_batches(4)])
    assert xe0.shape == (10, 3, 16, 16) and torch.equal(xe0, xe1)
    wide = cached.decoded("train")
    assert wide.image(wide.index["train/owl/wide.png"]).shape == (18, 45, 3)


def test_a_cache_folder_from_the_environment(tmp_path, monkeypatch):
    root = make_imagenet_layout(tmp_path / "inet", per_class=1)
    monkeypatch.setenv(imf.CACHE_ENV, str(tmp_path / "cache"))
    ds = data.get("imagefolder", root, image_size=16, workers=0)
    ds.decoded("val")
    (written,) = (tmp_path / "cache").glob("inet-*/val-18px.npz")
    assert ds.cache_file("val") == written and not (root / imf.CACHE_FOLDER).exists()
    monkeypatch.setenv(imf.CACHE_ENV, "off")
    with pytest.raises(DataError, match="INTERSPACE_IMAGE_CACHE='off': use file, memory, none"):
        data.get("imagefolder", root, workers=0)


def test_eval_transform_shapes_and_crop_scale(tmp_path):
    root = tmp_path / "inet"
    for c in CLASSES:
        _img(root / "train" / c / "a.png", c, (50, 30))
        _img(root / "val" / c / "b.png", c, (30, 50))
    ds = imf.load_image_folder("imagefolder", root, 24, workers=0, crop_scale=(0.5, 1.0))
    assert ds.crop_scale == (0.5, 1.0) and ds.side == 27
    val = ds.decoded("val")
    assert [tuple(s) for s in val.shapes.tolist()] == [(45, 27)] * 3  # short side 27
    x, y = next(ds.test_batches(2))
    assert x.shape == (2, 3, 24, 24) and y.tolist() == [0, 1]
    x, _ = _batch(ds, n=3)
    assert x.shape == (3, 3, 24, 24)
    with pytest.raises(DataError, match="crop scale"):
        imf.load_image_folder("imagefolder", root, 24, crop_scale=(0.0, 1.0))
