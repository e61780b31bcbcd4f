import torch

from interspace_pruning import data
from interspace_pruning.data import ImageDataset, balanced_indices, random_crop_flip


def test_random_crop_flip_matches_a_per_sample_crop():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, g, padding=2)
    g = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 5, (2,), generator=g)
    ox = torch.randint(0, 5, (2,), generator=g)
    flip = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        crop = padded[i, :, oy[i] : oy[i] + 6, ox[i] : ox[i] + 6]
        if flip[i]:
            crop = crop.flip(-1)
        assert torch.equal(out[i], crop)


def test_batches_are_deterministic_per_seed_and_cover_the_data():
    ds = data.get("digits")
    a = [y for _, y in ds.train_batches(100, torch.Generator().manual_seed(3))]
    b = [y for _, y in ds.train_batches(100, torch.Generator().manual_seed(3))]
    c = [y for _, y in ds.train_batches(100, torch.Generator().manual_seed(4))]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    assert sum(len(y) for y in a) == 1400  # drop_last
    full = list(ds.train_batches(100, torch.Generator(), drop_last=False))
    assert sum(len(y) for _, y in full) == len(ds.train_y)


def test_digits_fixed_stratified_split():
    ds = data.get("digits")
    assert (len(ds.train_y), len(ds.test_y)) == (1438, 359)
    counts = torch.bincount(ds.test_y, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37
    again = data.get("digits")
    assert torch.equal(again.test_x, ds.test_x)
    assert ds.image_shape == (1, 8, 8) and ds.in_channels == 1


def test_balanced_subsets():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = balanced_indices(labels, 30, 3, seed=0)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10]
    idx = balanced_indices(labels, 90, 3, seed=0)  # class 2 runs out: the rest fill in
    assert torch.bincount(labels[idx]).tolist() == [40, 30, 20]
    ds = data.get("digits", train_subset=100, test_subset=50)
    assert isinstance(ds, ImageDataset) and len(ds.train_y) == 100 and len(ds.test_y) == 50
