"""Splitting: stratified, deterministic, and never leaking an image into two splits."""

import numpy as np
import pytest

from mlops_assets.ml.images import image_hashes, load_digits_dataset
from mlops_assets.ml.splits import SplitFractions, stratified_split


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def test_every_row_lands_in_exactly_one_split(digits):
    splits = stratified_split(digits.images, digits.labels, SplitFractions(), seed=1)
    rows = np.concatenate(list(splits.values()))
    assert sorted(rows.tolist()) == list(range(len(digits.labels)))


def test_fractions_and_stratification(digits):
    splits = stratified_split(digits.images, digits.labels, SplitFractions(0.7, 0.15, 0.15), seed=1)
    n = len(digits.labels)
    assert abs(len(splits["train"]) / n - 0.70) < 0.02
    assert abs(len(splits["test"]) / n - 0.15) < 0.02
    overall = np.bincount(digits.labels) / n
    for rows in splits.values():
        share = np.bincount(digits.labels[rows], minlength=10) / len(rows)
        assert np.max(np.abs(share - overall)) < 0.03


def test_same_seed_same_split_other_seed_other_split(digits):
    a = stratified_split(digits.images, digits.labels, SplitFractions(), seed=7)
    b = stratified_split(digits.images, digits.labels, SplitFractions(), seed=7)
    c = stratified_split(digits.images, digits.labels, SplitFractions(), seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_identical_images_never_cross_splits():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(60, 1, 4, 4), dtype=np.uint8)
    images[30:] = images[:30]  # every image twice
    labels = np.repeat(np.arange(3), 10).tolist() * 2
    splits = stratified_split(images, np.asarray(labels), SplitFractions(), seed=0)
    hashes = image_hashes(images)
    seen = {}
    for name, rows in splits.items():
        for row in rows:
            assert seen.setdefault(hashes[row], name) == name


def test_every_class_in_every_split_even_when_small():
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1).repeat(4, axis=2).repeat(4, axis=3)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 4)
    splits = stratified_split(images, labels, SplitFractions(), seed=0)
    for rows in splits.values():
        assert set(labels[rows]) == {0, 1, 2}


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.2), (1.0, 0.0, 0.0), (0.5, -0.1, 0.6)])
def test_bad_fractions_are_rejected(fractions):
    with pytest.raises(ValueError, match="fractions"):
        SplitFractions(*fractions)
