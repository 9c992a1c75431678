"""Splitting: stratified, deterministic, never leaking an image into two splits, and stable across versions."""

import numpy as np
import pytest

from mlops_assets.core.data.images import image_hashes, load_digits_dataset
from mlops_assets.core.data.splits import SplitFractions, assign_splits, stratified_split


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def test_every_row_lands_in_exactly_one_split(digits):
    splits = stratified_split(digits.images, digits.labels, SplitFractions(), seed=1).indices
    rows = np.concatenate(list(splits.values()))
    assert sorted(rows.tolist()) == list(range(len(digits.labels)))


def test_fractions_and_stratification(digits):
    splits = stratified_split(digits.images, digits.labels, SplitFractions(0.7, 0.15, 0.15), seed=1).indices
    n = len(digits.labels)
    assert abs(len(splits["train"]) / n - 0.70) < 0.02
    assert abs(len(splits["test"]) / n - 0.15) < 0.02
    overall = np.bincount(digits.labels) / n
    for rows in splits.values():
        share = np.bincount(digits.labels[rows], minlength=10) / len(rows)
        assert np.max(np.abs(share - overall)) < 0.03


def test_same_seed_same_split_other_seed_other_split(digits):
    a = stratified_split(digits.images, digits.labels, SplitFractions(), seed=7).indices
    b = stratified_split(digits.images, digits.labels, SplitFractions(), seed=7).indices
    c = stratified_split(digits.images, digits.labels, SplitFractions(), seed=8).indices
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_identical_images_never_cross_splits():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(60, 1, 4, 4), dtype=np.uint8)
    images[30:] = images[:30]  # every image twice
    labels = np.repeat(np.arange(3), 10).tolist() * 2
    splits = stratified_split(images, np.asarray(labels), SplitFractions(), seed=0).indices
    hashes = image_hashes(images)
    seen = {}
    for name, rows in splits.items():
        for row in rows:
            assert seen.setdefault(hashes[row], name) == name


def test_every_class_in_every_split_even_when_small():
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1).repeat(4, axis=2).repeat(4, axis=3)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 4)
    splits = stratified_split(images, labels, SplitFractions(), seed=0).indices
    for rows in splits.values():
        assert set(labels[rows]) == {0, 1, 2}


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.2), (1.0, 0.0, 0.0), (0.5, -0.1, 0.6)])
def test_bad_fractions_are_rejected(fractions):
    with pytest.raises(ValueError, match="fractions"):
        SplitFractions(*fractions)


def split_of(assignment, hashes):
    mapping = assignment.split_of_hash()
    return {h: mapping[h] for h in hashes}


def test_added_images_never_move_an_image_that_already_had_a_split(digits):
    """Adding 30 images to one class re-dealt every split before; now only the new images are dealt."""
    first = stratified_split(digits.images[:1500], digits.labels[:1500], SplitFractions(), seed=3)
    before = first.split_of_hash()
    rng = np.random.default_rng(0)
    extra = rng.integers(0, 255, size=(30, 1, 8, 8), dtype=np.uint8)
    images = np.concatenate([digits.images[:1500], extra])
    labels = np.concatenate([digits.labels[:1500], np.full(30, 4)])
    second = stratified_split(images, labels, SplitFractions(), seed=3, previous=before)
    after = second.split_of_hash()
    assert all(after[h] == split for h, split in before.items())
    assert second.kept == 1500 and second.dealt == 30
    # the new images restore the fractions of their class rather than all landing in one split
    new = [after[h] for h in image_hashes(extra)]
    assert min(new.count(name) for name in ("train", "val", "test")) >= 3
    class_rows = {name: int(np.sum(labels[rows] == 4)) for name, rows in second.indices.items()}
    total = sum(class_rows.values())
    assert abs(class_rows["test"] / total - 0.15) < 0.02 and abs(class_rows["train"] / total - 0.70) < 0.02


def test_removed_images_leave_the_rest_where_they_were(digits):
    first = stratified_split(digits.images, digits.labels, SplitFractions(), seed=3)
    keep = np.arange(len(digits.labels)) % 7 != 0  # a seventh of the images disappear
    second = stratified_split(digits.images[keep], digits.labels[keep], SplitFractions(), seed=3,
                              previous=first.split_of_hash())
    before, after = first.split_of_hash(), second.split_of_hash()
    assert all(before[h] == split for h, split in after.items())
    assert second.dealt == 0


def test_no_image_that_trained_a_model_reaches_a_later_test_split(digits):
    """Version N trains a model; version N+1 (N plus new images) must not test it on its training images."""
    v1 = stratified_split(digits.images[:1200], digits.labels[:1200], SplitFractions(), seed=1)
    trained_on = {v1.hashes[r] for name in ("train", "val") for r in v1.indices[name]}
    v2 = stratified_split(digits.images, digits.labels, SplitFractions(), seed=1, previous=v1.split_of_hash())
    test_hashes = {v2.hashes[r] for r in v2.indices["test"]}
    assert not trained_on & test_hashes
    assert len(test_hashes) > len({v1.hashes[r] for r in v1.indices["test"]})  # the new images were dealt too


def test_classes_too_small_for_three_splits_are_reported():
    hashes = [f"h{i}" for i in range(8)]
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assignment = assign_splits(hashes, labels, SplitFractions(), seed=0)
    assert assignment.small_classes == {1: 2}
    assert set(labels[assignment.indices["test"]]) == {0}
