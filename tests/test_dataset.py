"""Decoded cache, Dataset and the reference augmentation (SECOND protocol)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from textscd_lib.data.dataset import NORMALIZATION, DecodedCache, SCDDataset, augment
from textscd_lib.data.second import SecondFormatError, find_pairs, read_image, read_label
from textscd_lib.data.synthetic import synthesize


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("d") / "mini", pairs=6, size=32, seed=2, val_fraction=1 / 3)


def _coupled(h=6, w=6, batch=None):
    """Images and labels that encode their own pixel position, so any mismatch in geometry shows."""
    pos = torch.arange(h * w).view(h, w)
    im = torch.stack([pos, pos + 1000, pos + 2000]).float()
    lab = pos % 7
    if batch:
        return im.expand(batch, -1, -1, -1).clone(), lab.expand(batch, -1, -1).clone()
    return im, lab


def test_augmentation_is_identical_on_both_images_and_both_labels_and_covers_the_8_outcomes():
    im, lab = _coupled()
    g = torch.Generator().manual_seed(0)
    seen = {}
    for _ in range(800):
        a1, a2, b1, b2 = augment(im, im + 1, lab, lab, g)
        assert torch.equal(a2, a1 + 1) and torch.equal(b1, b2)
        assert torch.equal(b1, a1[0].long() % 7)  # labels moved exactly like the image pixels
        key = tuple(a1[0].flatten()[:2].tolist())
        seen[key] = seen.get(key, 0) + 1
    assert len(seen) == 8  # rot90 × {none, v, h, both}
    assert all(60 < c < 140 for c in seen.values()), seen  # p = 1/8 each


def test_batched_augmentation_draws_per_sample_and_keeps_each_sample_consistent():
    im, lab = _coupled(batch=32)
    a1, a2, b1, b2 = augment(im, im.clone(), lab, lab.clone(), torch.Generator().manual_seed(1))
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and torch.equal(b1, a1[:, 0].long() % 7)
    assert len({tuple(x[0, :1, :2].flatten().tolist()) for x in a1}) > 3  # not one draw for the whole batch


def test_dataset_item_has_the_contract_keys_dtypes_and_recorded_normalisation(root):
    ds = SCDDataset(root, "train")
    assert len(ds) == 4 and ds.normalization == "second"
    item = ds[1]
    assert item["im1"].shape == (3, 32, 32) and item["im1"].dtype == torch.float32
    assert item["label1"].dtype == torch.int64 and item["change"].dtype == torch.float32
    im1, im2, l1, l2 = ds.raw(1)
    m1, s1, m2, s2 = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION["second"])
    assert torch.allclose(item["im1"] * s1 + m1, torch.from_numpy(im1).permute(2, 0, 1).float(), atol=1e-3)
    assert torch.allclose(item["im2"] * s2 + m2, torch.from_numpy(im2).permute(2, 0, 1).float(), atol=1e-3)
    assert torch.equal(item["change"], (item["label1"] > 0).float())
    assert torch.equal(item["change"], (item["label2"] > 0).float())


def test_cache_serves_exactly_what_png_decoding_gives(root):
    cache = DecodedCache(root, "val")
    assert isinstance(cache.images, np.memmap) and cache.images.shape == (2, 2, 32, 32, 3)
    for i, p in enumerate(find_pairs(root, "val")):
        assert cache.names[i] == p.name
        assert np.array_equal(cache.images[i, 0], read_image(p.im1))
        assert np.array_equal(cache.labels[i, 1], read_label(p.label2))


def test_cache_is_built_once_and_rebuilt_when_a_file_changes(tmp_path):
    root = synthesize(tmp_path / "m", pairs=3, size=32, seed=4, val_fraction=0)
    first = DecodedCache(root, "train")
    assert first.built
    again = DecodedCache(root, "train")
    assert not again.built and again.key == first.key
    p = find_pairs(root, "train")[0]
    arr = read_image(p.im1).copy()
    arr[0, 0] = (1, 2, 3)
    from PIL import Image

    Image.fromarray(arr).save(p.im1)
    os.utime(p.im1, ns=(time.time_ns(), time.time_ns() + 10**9))
    rebuilt = DecodedCache(root, "train")
    assert rebuilt.built and rebuilt.key != first.key
    assert rebuilt.images[0, 0, 0, 0].tolist() == [1, 2, 3]
    assert len(list((root / ".cache").glob("decoded-train-*.json"))) == 1  # the stale cache is gone


def test_training_data_runs_the_validation_checks_and_names_the_bad_file(tmp_path):
    root = synthesize(tmp_path / "m", pairs=3, size=32, seed=5, val_fraction=0)
    bad = find_pairs(root, "train")[2].label2
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(bad)
    with pytest.raises(SecondFormatError, match=str(bad)):
        SCDDataset(root, "train")
    assert not list((root / ".cache").glob("*.npy"))


def test_augmented_dataset_is_seeded(root):
    a = SCDDataset(root, "train", augment=True, seed=3)
    b = SCDDataset(root, "train", augment=True, seed=3)
    for i in range(len(a)):
        assert torch.equal(a[i]["im1"], b[i]["im1"]) and torch.equal(a[i]["label2"], b[i]["label2"])
