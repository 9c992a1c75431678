"""Stratified, deterministic, leakage-free and *stable* train/val/test splitting.

Two promises, both needed for a champion-vs-challenger comparison to mean anything:

- Identical images are grouped before splitting, so an image and its exact duplicate always land in
  the same split: a test set that contains training images measures memory, not generalisation.
- An image keeps its split in every later version of the dataset. The previous assignment (image
  content hash → split, the ledger of every image the lineage has ever seen, present now or not) is
  carried forward, so an image removed for a while and put back returns to its split; only images it
  has never seen are dealt, in the order of
  a seeded hash of their content, to whichever split is furthest below its share, so the fractions are
  restored without moving anything already assigned. A model trained on version N therefore never
  finds its training images in the test split of version N+1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlops_assets.core.data.images import image_hashes

if TYPE_CHECKING:
    import numpy as np

SPLIT_NAMES = ("train", "val", "test")
MIN_GROUPS_FOR_THREE_SPLITS = 3


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        values = (self.train, self.val, self.test)
        if any(v <= 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {values}")

    def share(self, name: str) -> float:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


@dataclass
class SplitAssignment:
    """Row indices per split, and how they came about (what was kept, what was dealt, what was too small)."""

    indices: dict[str, np.ndarray]
    hashes: list[str]
    kept: int = 0  # images whose split came from the previous assignment
    dealt: int = 0  # images seen for the first time, dealt to restore the fractions
    small_classes: dict[int, int] = field(default_factory=dict)  # class → image groups, when < 3

    def split_of_hash(self) -> dict[str, str]:
        """The assignment to carry forward: image content hash → split name."""
        mapping: dict[str, str] = {}
        for name, rows in self.indices.items():
            for row in rows:
                mapping[self.hashes[row]] = name
        return mapping


def _targets(n_groups: int, fractions: SplitFractions) -> dict[str, int]:
    """How many of a class's image groups each split should hold (at least one each from 3 groups)."""
    if n_groups < MIN_GROUPS_FOR_THREE_SPLITS:
        return {"train": n_groups, "val": 0, "test": 0}
    n_test = max(1, int(round(n_groups * fractions.test)))
    n_val = max(1, int(round(n_groups * fractions.val)))
    return {"train": n_groups - n_test - n_val, "val": n_val, "test": n_test}


def _deal_order(digest: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{digest}".encode()).hexdigest()


def assign_splits(
    hashes: list[str],
    labels: np.ndarray,
    fractions: SplitFractions,
    seed: int,
    previous: dict[str, str] | None = None,
) -> SplitAssignment:
    """Assign every row to a split, keeping ``previous`` (content hash → split) where it knows the image.

    Per class (the majority label of a group of identical images): groups the previous assignment
    knows stay where they were; new groups, in the order of ``sha1(seed:hash)``, each go to the split
    with the largest shortfall against its target count. The result depends only on the images, the
    labels, the fractions, the seed and the previous assignment.
    """
    import numpy as np
    if len(hashes) != len(labels):
        raise ValueError(f"{len(hashes)} images but {len(labels)} labels")
    previous = previous or {}
    groups: dict[str, list[int]] = {}
    for row, digest in enumerate(hashes):
        groups.setdefault(digest, []).append(row)
    by_class: dict[int, list[str]] = {}
    for digest, rows in groups.items():
        majority = int(np.bincount(labels[rows]).argmax())
        by_class.setdefault(majority, []).append(digest)

    assigned: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    result = SplitAssignment(indices={}, hashes=list(hashes))
    for label in sorted(by_class):
        digests = by_class[label]
        if len(digests) < MIN_GROUPS_FOR_THREE_SPLITS:
            result.small_classes[label] = len(digests)
        shortfall = _targets(len(digests), fractions)
        new: list[str] = []
        for digest in digests:
            split = previous.get(digest)
            if split in SPLIT_NAMES:
                assigned[split].extend(groups[digest])
                shortfall[split] -= 1
                result.kept += len(groups[digest])
            else:
                new.append(digest)
        for digest in sorted(new, key=lambda d: _deal_order(d, seed)):
            split = max(SPLIT_NAMES, key=lambda name: (shortfall[name], fractions.share(name)))
            assigned[split].extend(groups[digest])
            shortfall[split] -= 1
            result.dealt += len(groups[digest])
    result.indices = {name: np.asarray(sorted(rows), dtype=np.int64) for name, rows in assigned.items()}
    return result


def stratified_split(
    images: np.ndarray,
    labels: np.ndarray,
    fractions: SplitFractions,
    seed: int,
    previous: dict[str, str] | None = None,
) -> SplitAssignment:
    """:func:`assign_splits` on the content hashes of ``images``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return assign_splits(image_hashes(images), labels, fractions, seed, previous)


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    import numpy as np
    return np.bincount(labels, minlength=n_classes).astype(int).tolist()
