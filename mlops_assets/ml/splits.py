"""Stratified, deterministic, leakage-free train/val/test splitting.

Identical images are grouped before splitting, so an image and its exact duplicate always land in
the same split: a test set that contains training images measures memory, not generalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlops_assets.ml.images import image_hashes

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        values = (self.train, self.val, self.test)
        if any(v <= 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {values}")


def stratified_split(
    images: np.ndarray, labels: np.ndarray, fractions: SplitFractions, seed: int
) -> dict[str, np.ndarray]:
    """Return the row indices of each split.

    Per class, the groups of identical images are shuffled with ``seed`` and dealt out by the
    cumulative fractions, with at least one group in each split whenever the class has three or
    more groups. The result depends only on the data, the fractions and the seed.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    hashes = image_hashes(images)
    groups: dict[str, list[int]] = {}
    for row, digest in enumerate(hashes):
        groups.setdefault(digest, []).append(row)
    by_class: dict[int, list[list[int]]] = {}
    for rows in groups.values():
        majority = int(np.bincount(labels[rows]).argmax())
        by_class.setdefault(majority, []).append(rows)

    rng = np.random.default_rng(seed)
    assigned: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(by_class):
        class_groups = sorted(by_class[label], key=lambda rows: rows[0])
        order = rng.permutation(len(class_groups))
        n = len(class_groups)
        n_test = max(1, int(round(n * fractions.test))) if n >= 3 else 0
        n_val = max(1, int(round(n * fractions.val))) if n >= 3 else 0
        n_train = n - n_test - n_val
        for position, group_index in enumerate(order):
            name = "train" if position < n_train else "val" if position < n_train + n_val else "test"
            assigned[name].extend(class_groups[group_index])
    return {name: np.asarray(sorted(rows), dtype=np.int64) for name, rows in assigned.items()}


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(labels, minlength=n_classes).astype(int).tolist()
