"""The label ledger: every image's label, by content hash, across all dataset versions, and the checks it feeds.

Why it exists: a dataset's identity (its content hash) and a model's signature (class names, geometry) say nothing
about *which* image carries which label. Swapping two class folders keeps both class names and every image, so the
gate would compare two models against labels production never saw, and an identical image filed under two classes
would be trained under both. The ledger remembers what each image was called, so a new dataset version can be
compared with all earlier ones:

- ``label_changes``: images the ledger knows under another class name. A relabelling on purpose is accepted
  explicitly, with a reason, and the acceptance is recorded in the ledger's history (the gate cites it).
- ``one_label_per_image``: one image (same pixel bytes) under two labels in this version, e.g. in two class folders.

The ledger is advanced only by a version that passes both (or whose changes were accepted), so a blocked version
never teaches it the labels it was blocked for. Labels are kept by class *name*, not index: adding a class folder
shifts indices without relabelling anything.

Layout (owned here): a ledger version directory holds ``ledger.npz`` (sorted ``S40`` content hashes, an ``int32``
code per hash into ``class_names``) and ``manifest.json`` (the history: each dataset version that advanced it, in
order, with the relabelling it accepted, if any). Everything is numpy arrays and sorted searches, so 200k images cost
a few MB and a fraction of a second. Pure logic: numpy only, no Dagster.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.core.data.artifacts import read_manifest, write_manifest
from mlops_assets.core.data.pixel_store import HASH_DTYPE

if TYPE_CHECKING:  # numpy is imported where it is used: loading the code location must not pay for it
    import numpy as np

LEDGER_FILE = "ledger.npz"
LABEL_CHECK_NAMES = ("label_changes", "one_label_per_image")
LABEL_CHECK_DESCRIPTIONS = {
    "label_changes": "no image (by content hash) carries another label than in earlier dataset versions, unless "
                     "the relabelling is accepted with a reason",
    "one_label_per_image": "no image (same pixel bytes) appears under two labels in this dataset version",
}
EXAMPLES = 10


class LabelLedgerError(ValueError):
    """A ledger directory that is incomplete or inconsistent."""


@dataclass(frozen=True)
class LabelLedger:
    """Every image seen so far and its label: sorted content hashes, a code per hash into ``class_names``."""

    hashes: np.ndarray  # HASH_DTYPE, sorted, distinct
    codes: np.ndarray  # int32 index into class_names
    class_names: tuple[str, ...]
    history: tuple[dict[str, Any], ...] = ()  # each advancing dataset version, oldest first

    @classmethod
    def empty(cls) -> LabelLedger:
        import numpy as np

        return cls(np.zeros(0, dtype=HASH_DTYPE), np.zeros(0, dtype=np.int32), ())

    def __len__(self) -> int:
        return len(self.hashes)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each hash: whether the ledger knows it, and its code (−1 where unknown)."""
        import numpy as np

        hashes = np.asarray(hashes, dtype=HASH_DTYPE)
        if not len(self.hashes):
            return np.zeros(len(hashes), dtype=bool), np.full(len(hashes), -1, dtype=np.int32)
        position = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        known = self.hashes[position] == hashes
        return known, np.where(known, self.codes[position], -1).astype(np.int32)

    def digest(self) -> str:
        content = repr((self.class_names, self.history)).encode() + self.hashes.tobytes() + self.codes.tobytes()
        return hashlib.sha256(content).hexdigest()

    def acceptances_since(self, dataset_version: str | None) -> list[dict[str, Any]]:
        """The relabellings accepted after ``dataset_version`` advanced the ledger (all of them when it never did,
        e.g. a model trained before the ledger existed)."""
        versions = [entry["dataset_version"] for entry in self.history]
        start = versions.index(dataset_version) + 1 if dataset_version in versions else 0
        return [entry for entry in self.history[start:] if entry.get("accepted_reason")]


@dataclass(frozen=True)
class LabelChange:
    image_hash: str
    source: str
    before: str
    after: str


@dataclass(frozen=True)
class LabelConflict:
    image_hash: str
    labels: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class LabelReview:
    """A dataset version against the ledger: what changed label, what holds two labels, with examples."""

    n_images: int  # distinct images in the version
    n_known: int  # of them, already in the ledger
    n_changed: int  # known images now under another label
    transitions: dict[str, int]  # "from → to" → images
    change_examples: tuple[LabelChange, ...]
    n_conflicts: int  # distinct images under two or more labels
    conflict_examples: tuple[LabelConflict, ...]
    observed: dict[str, Any] = field(default_factory=dict)

    def changes_reason(self, accepted: str = "") -> str:
        if not self.n_changed:
            return (f"no image changed label: {self.n_known} of {self.n_images} image(s) known to the ledger "
                    "kept theirs")
        moves = ", ".join(f"{k} ×{n}" for k, n in self.transitions.items())
        examples = "; ".join(f"{c.source} ({c.before} → {c.after})" for c in self.change_examples[:3])
        text = (f"{self.n_changed} of {self.n_known} known image(s) changed label ({moves}); e.g. {examples}")
        if accepted:
            return f"{text}. Accepted as a relabelling on purpose: {accepted}"
        return (f"{text}. If this relabelling is on purpose, accept it with a reason "
                "(label_ledger config accept_label_changes); otherwise restore the class folders")

    def conflicts_reason(self) -> str:
        if not self.n_conflicts:
            return f"every one of {self.n_images} distinct image(s) has one label"
        examples = "; ".join(
            f"{' and '.join(c.sources)} ({' / '.join(c.labels)})" for c in self.conflict_examples[:3]
        )
        return (f"{self.n_conflicts} image(s) appear under two or more labels, e.g. {examples}: keep each image in "
                "one class folder")


def _per_image(hashes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct hashes, the first row of each, its lowest and highest label (different: two labels)."""
    import numpy as np

    unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    low = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(len(unique), -1, dtype=np.int64)
    np.minimum.at(low, inverse, labels)
    np.maximum.at(high, inverse, labels)
    return unique, first, low, high


def review_labels(
    hashes: np.ndarray, labels: np.ndarray, class_names: Sequence[str], sources: Sequence[str],
    ledger: LabelLedger,
) -> LabelReview:
    """Compare a dataset version (a content hash, a label index and a source path per row) with the ledger."""
    import numpy as np

    hashes = np.asarray(hashes, dtype=HASH_DTYPE)
    labels = np.asarray(labels, dtype=np.int64)
    if not len(hashes) == len(labels) == len(sources):
        raise ValueError(f"{len(hashes)} hashes, {len(labels)} labels and {len(sources)} sources: one each per row")
    unique, first, low, high = _per_image(hashes, labels)
    conflicted = np.flatnonzero(low != high)
    conflict_examples = []
    for group in conflicted[:EXAMPLES]:
        rows = np.flatnonzero(hashes == unique[group])
        conflict_examples.append(LabelConflict(
            unique[group].decode(), tuple(sorted({class_names[labels[r]] for r in rows})),
            tuple(str(sources[r]) for r in rows),
        ))
    single = low == high
    known, codes = ledger.lookup(unique)
    # The ledger's code as this version's label index (by class name); −2 for a class this version lacks.
    index_of = {name: i for i, name in enumerate(class_names)}
    translate = np.asarray([index_of.get(name, -2) for name in ledger.class_names] + [-1], dtype=np.int64)
    before = translate[codes]  # codes −1 (unknown) → the appended −1
    changed = np.flatnonzero(single & known & (before != low))
    transitions = Counter(
        f"{ledger.class_names[codes[g]]} → {class_names[low[g]]}" for g in changed
    )
    examples = tuple(
        LabelChange(unique[g].decode(), str(sources[first[g]]), ledger.class_names[codes[g]], class_names[low[g]])
        for g in changed[:EXAMPLES]
    )
    return LabelReview(
        n_images=len(unique), n_known=int(known.sum()), n_changed=len(changed),
        transitions=dict(sorted(transitions.items(), key=lambda kv: (-kv[1], kv[0]))),
        change_examples=examples, n_conflicts=len(conflicted), conflict_examples=tuple(conflict_examples),
        observed={"images_distinct": len(unique), "images_known": int(known.sum()), "images_new":
                  int(len(unique) - known.sum()), "ledger_images": len(ledger)},
    )


def advance(
    ledger: LabelLedger, hashes: np.ndarray, labels: np.ndarray, class_names: Sequence[str], dataset_version: str,
    review: LabelReview, accepted_reason: str = "",
) -> LabelLedger:
    """The ledger with this version's labels added (and, for accepted changes, replacing the old ones), and the
    version appended to the history. Refuses a version that still holds an image under two labels."""
    import numpy as np

    if review.n_conflicts:
        raise LabelLedgerError(f"dataset {dataset_version}: {review.conflicts_reason()}")
    if review.n_changed and not accepted_reason:
        raise LabelLedgerError(f"dataset {dataset_version}: {review.changes_reason()}")
    hashes = np.asarray(hashes, dtype=HASH_DTYPE)
    unique, _, low, _ = _per_image(hashes, np.asarray(labels, dtype=np.int64))
    names = tuple(dict.fromkeys([*ledger.class_names, *class_names]))
    position = {name: i for i, name in enumerate(names)}
    current = np.asarray([position[name] for name in class_names], dtype=np.int32)[low]
    old = np.asarray([position[name] for name in ledger.class_names], dtype=np.int32)[ledger.codes] \
        if len(ledger) else np.zeros(0, dtype=np.int32)
    merged, pick = np.unique(np.concatenate([unique, ledger.hashes]), return_index=True)  # this version first
    codes = np.concatenate([current, old])[pick].astype(np.int32)
    history = list(ledger.history)
    entry: dict[str, Any] = {"dataset_version": dataset_version, "images": review.n_images,
                             "new_images": review.n_images - review.n_known}
    if review.n_changed:
        entry.update(accepted_reason=accepted_reason, changed=review.n_changed, transitions=review.transitions)
    if not history or history[-1]["dataset_version"] != dataset_version or review.n_changed:
        history.append(entry)
    return LabelLedger(merged, codes, names, tuple(history))


def write_ledger(directory: Path, ledger: LabelLedger, extra: dict[str, Any]) -> None:
    import numpy as np

    with open(Path(directory) / LEDGER_FILE, "wb") as out:
        np.savez(out, hashes=ledger.hashes, codes=ledger.codes)
    write_manifest(Path(directory), {"class_names": list(ledger.class_names), "history": list(ledger.history),
                                     "images": len(ledger), **extra})


def read_ledger(directory: str | Path) -> LabelLedger:
    import numpy as np

    manifest = read_manifest(directory)
    path = Path(directory) / LEDGER_FILE
    try:
        with np.load(path) as data:
            hashes, codes = data["hashes"], data["codes"]
    except (FileNotFoundError, KeyError) as exc:
        raise LabelLedgerError(f"{path} is missing or incomplete ({exc}): {directory} is not a label ledger") from exc
    names = tuple(manifest["class_names"])
    if len(hashes) != len(codes) or (len(codes) and int(codes.max()) >= len(names)):
        raise LabelLedgerError(f"{path}: {len(hashes)} hashes and {len(codes)} codes for {len(names)} classes")
    return LabelLedger(hashes, codes.astype(np.int32), names, tuple(manifest.get("history", [])))


def label_map(hashes: Sequence[str], labels: np.ndarray, class_names: Sequence[str]) -> dict[str, str]:
    """content hash → class name, for a split's rows (what a model was trained and tested against)."""
    return {digest: class_names[int(label)] for digest, label in zip(hashes, labels, strict=True)}
