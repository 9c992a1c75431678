"""Labelled image folders (one sub-folder per class), listed once and decoded in parallel, in order.

Decoding dominates reading a folder (about 70 µs an image for a small PNG, on one core), so it runs in a pool of
worker processes, each decoding a chunk of files; chunks come back in file order, so the result does not depend
on the number of workers. A bounded number of chunks is in flight, so memory holds a few chunks, never the folder.
Workers are started with ``spawn`` (a fork of a threaded Dagster process is unsafe) and import only this module's
light dependencies (numpy, PIL).
"""

from __future__ import annotations

import os
import sys
import types
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from mlops_assets.core.data.images import (
    DEFAULT_MAX_PIXELS,
    EMPTY,
    IMAGE_SUFFIXES,
    NOT_AN_IMAGE,
    TOO_LARGE,
    TRUNCATED,
    UNREADABLE_IMAGE,
    DatasetError,
    ImageDataset,
    ImageDecodeError,
    PreprocessSpec,
    decode_image_with_size,
)
from mlops_assets.core.data.pixel_store import DecodedChunk

CHUNK_FILES = 512  # files per worker task: large enough to amortise the round trip, small enough to stream
IN_FLIGHT_PER_WORKER = 4
# Starting a worker (a fresh interpreter importing numpy and PIL) costs about what decoding a few thousand small
# images does, so the automatic choice gives each worker at least this many files (BENCHMARKS.md, bench_scale).
FILES_PER_WORKER = 10_000


def default_workers(n_files: int) -> int:
    """One decoding process per core this process may run on, but at most one per :data:`FILES_PER_WORKER` files."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_files // FILES_PER_WORKER))


@dataclass
class FolderListing:
    """What a folder holds: class names (sorted sub-folders), the image files in label then name order, and
    every file that is not used, with why."""

    root: Path
    class_names: list[str]
    files: list[tuple[str, int]]  # (path relative to root, label)
    skipped: list[tuple[str, str]] = field(default_factory=list)


SHRINK_WARN_FACTOR = 4  # an image shrunk more than this in height or width has lost most of its detail


def shrink_warning(original_sizes: np.ndarray | None, spec: PreprocessSpec, origin: str) -> str | None:
    """A warning when most images are shrunk more than :data:`SHRINK_WARN_FACTOR`× in either side, naming where
    the geometry came from: a geometry meant for other data (a stale settings file's 8×8) then reads as
    intended, while accuracy quietly suffers."""
    import numpy as np

    if original_sizes is None:  # a dataset stored before sizes were kept
        return None
    sizes = np.asarray(original_sizes, dtype=np.int64).reshape(-1, 2)
    if not len(sizes):
        return None
    shrunk = (sizes[:, 0] > SHRINK_WARN_FACTOR * spec.height) | (sizes[:, 1] > SHRINK_WARN_FACTOR * spec.width)
    if 2 * int(shrunk.sum()) <= len(sizes):
        return None
    height, width = (int(v) for v in np.median(sizes, axis=0))
    return (
        f"{int(shrunk.sum())} of {len(sizes)} images are shrunk more than {SHRINK_WARN_FACTOR}× in height or width "
        f"to {spec.height}×{spec.width} (median original {height}×{width}); the geometry comes from {origin}. "
        "If that is not meant, set MLOPS_IMAGE_HEIGHT and MLOPS_IMAGE_WIDTH (or the dataset_source resource)."
    )


# Why a file is not used, the word each listed reason starts with: the decoder's (images.py) and the folder's own.
SYSTEM_FILE = "system file"
NESTED_FOLDER = "nested folder"
BESIDE_CLASSES = "beside the class folders"
SKIP_KINDS = (EMPTY, TRUNCATED, NOT_AN_IMAGE, TOO_LARGE, UNREADABLE_IMAGE, SYSTEM_FILE, NESTED_FOLDER, BESIDE_CLASSES)
# Files operating systems and tools leave in folders (hidden files, ``._`` resource forks, thumbnail caches)
SYSTEM_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})


def is_system_file(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def skipped_by_reason(skipped: list[tuple[str, str]]) -> dict[str, int]:
    """How many files were not used, by the kind of reason (in :data:`SKIP_KINDS` order; ``other`` for a reason
    of none of them, e.g. from a dataset stored before reasons had kinds)."""
    counts: dict[str, int] = {}
    for _, reason in skipped:
        kind = next((k for k in SKIP_KINDS if reason.startswith(k)), "other")
        counts[kind] = counts.get(kind, 0) + 1
    order = {kind: i for i, kind in enumerate((*SKIP_KINDS, "other"))}
    return dict(sorted(counts.items(), key=lambda item: order[item[0]]))


def _files_under(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def class_folders(root: str | Path) -> list[Path]:
    """The class sub-folders of an image folder, in label order (sorted names; hidden folders are no class).
    Cheap, no file listed: the service reads its classes from here when no model is served yet."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_image_folder(root: str | Path) -> FolderListing:
    """List a folder with one sub-folder per class, refusing layouts a model would be meaningless on.

    Classes are the sub-folder names in sorted order, so label indices are stable across runs. Fewer than two
    classes is a :class:`DatasetError` naming the path. Every file not used is listed in ``skipped``, its
    reason led by its kind (:func:`skipped_by_reason` counts them): files of other formats, system files
    (``.DS_Store``, ``Thumbs.db``, hidden files), files beside the class folders, and folders inside a class
    folder. Such a nested folder is skipped, not read and not refused: one level of class folders is read
    (nesting would be guessed, a burst folder is not a class), and one stray folder among thousands of images
    should not stop the rest from training; the build warns with the list, so none goes unnoticed.
    """
    root = Path(root)
    class_dirs = class_folders(root)
    if len(class_dirs) < 2:
        raise DatasetError(
            f"image folder {root} has {len(class_dirs)} class sub-folder(s); at least two are needed "
            "(one sub-folder per class, e.g. cats/ and dogs/)"
        )
    listing = FolderListing(root, [d.name for d in class_dirs], [])
    for stray in sorted(p for p in root.iterdir() if p.is_file()):
        listing.skipped.append(
            (str(stray), f"{SYSTEM_FILE}: hidden or left by the operating system" if is_system_file(stray.name)
             else f"{BESIDE_CLASSES}: a file here belongs to no class")
        )
    for label, class_dir in enumerate(class_dirs):
        with os.scandir(class_dir) as entries:  # file types from the directory listing: no stat per file
            listed = sorted((e.name, e.is_dir()) for e in entries)
        for name, is_dir in listed:
            path = class_dir / name
            if is_dir:
                listing.skipped.append((str(path), f"{NESTED_FOLDER}: its {_files_under(path)} file(s) are not "
                                                   "read; one level of class folders is read, so move images "
                                                   f"meant for class {class_dir.name} up into it"))
                continue
            if is_system_file(name):
                listing.skipped.append((str(path), f"{SYSTEM_FILE}: hidden or left by the operating system"))
                continue
            suffix = Path(name).suffix
            if suffix.lower() not in IMAGE_SUFFIXES:
                listing.skipped.append((str(path), f"{NOT_AN_IMAGE} file (suffix {suffix or 'none'}); "
                                                   f"read are: {' '.join(IMAGE_SUFFIXES)}"))
                continue
            listing.files.append((f"{class_dir.name}/{name}", label))
    _refuse_classes_only_nested(listing)
    return listing


def _refuse_classes_only_nested(listing: FolderListing) -> None:
    """A class folder holding folders and no image of its own means the classes sit a level deeper than read:
    skipping would leave the class empty, so the layout is refused with the paths and what to do."""
    labelled = {label for _, label in listing.files}
    nested = [Path(path) for path, reason in listing.skipped if reason.startswith(NESTED_FOLDER)]
    only_nested = [p for p in nested if listing.class_names.index(p.parent.name) not in labelled]
    if only_nested:
        raise DatasetError(
            f"image folder {listing.root}: class folders must hold image files, not folders; found "
            f"{', '.join(str(p.relative_to(listing.root)) for p in only_nested[:5])}"
            + (f" and {len(only_nested) - 5} more" if len(only_nested) > 5 else "")
            + " in class folders with no image of their own. Each sub-folder of the root is one class: move "
            "nested classes up one level."
        )


def decode_files(root: str, files: list[tuple[str, int]], spec: dict[str, int], max_pixels: int) -> DecodedChunk:
    """Decode some files of a folder (one worker task); unreadable ones are skipped with the reason."""
    import numpy as np
    geometry = PreprocessSpec(**spec)
    images, labels, sizes, sources, skipped = [], [], [], [], []
    for relative, label in files:
        path = Path(root) / relative
        try:
            image, size = decode_image_with_size(path, geometry, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            skipped.append((str(path), exc.reason))
            continue
        images.append(image)
        labels.append(label)
        sizes.append(size)
        sources.append(relative)
    shape = (len(images), geometry.channels, geometry.height, geometry.width)
    return DecodedChunk(
        images=np.stack(images) if images else np.zeros(shape, dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        original_sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
        sources=sources,
        skipped=skipped,
    )


def decode_folder(
    listing: FolderListing, spec: PreprocessSpec, min_per_class: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 0, chunk_files: int = CHUNK_FILES,
) -> Iterator[DecodedChunk]:
    """Decoded chunks of the listed files, in file order, by ``workers`` processes (1: this one; 0: automatic,
    :func:`default_workers`).

    After the last chunk, a class with fewer than ``min_per_class`` readable images raises :class:`DatasetError`,
    so a caller writing the chunks somewhere never publishes a dataset that cannot be trained on.
    """
    import numpy as np
    workers = workers or default_workers(len(listing.files))
    tasks = [(str(listing.root), listing.files[i : i + chunk_files], spec.as_dict(), max_pixels)
             for i in range(0, len(listing.files), chunk_files)]
    counts = np.zeros(len(listing.class_names), dtype=np.int64)
    skipped = 0
    for chunk in _decoded(tasks, workers):
        counts += np.bincount(chunk.labels, minlength=len(counts))
        skipped += len(chunk.skipped)
        yield chunk
    too_small = {name: int(n) for name, n in zip(listing.class_names, counts, strict=True) if n < min_per_class}
    if too_small:
        raise DatasetError(
            f"image folder {listing.root}: classes with fewer than {min_per_class} readable image(s): {too_small}"
            + (f"; {skipped + len(listing.skipped)} file(s) could not be read" if skipped + len(listing.skipped)
               else "")
        )


def _decoded(tasks: list[tuple], workers: int) -> Iterator[DecodedChunk]:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield decode_files(*task)
        return
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context)
    try:
        pending: deque = deque()
        queued = iter(tasks)
        with _without_main_module():  # the first submissions start every worker
            for task in queued:
                pending.append(pool.submit(decode_files, *task))
                if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                    break
        while pending:
            chunk = pending.popleft().result()
            next_task = next(queued, None)
            if next_task is not None:
                pending.append(pool.submit(decode_files, *next_task))
            yield chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _without_main_module() -> Iterator[None]:
    """Start spawned workers without the parent's ``__main__``.

    A spawned worker first re-runs the parent's main script: for a console script (``dagster``, ``pytest``) that
    imports its whole package (seconds per worker), and a user's script without an ``if __name__ ==
    "__main__"`` guard would start the build again and fail. Decoding needs none of it, so while workers start,
    ``__main__`` is a bare module.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def load_image_folder(
    root: str | Path, spec: PreprocessSpec, min_per_class: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> ImageDataset:
    """A whole folder decoded into memory (small folders: tests, the simulator); the build streams instead."""
    import numpy as np
    listing = list_image_folder(root)
    chunks = list(decode_folder(listing, spec, min_per_class, max_pixels, workers))
    shape = (0, spec.channels, spec.height, spec.width)
    return ImageDataset(
        images=np.concatenate([c.images for c in chunks]) if chunks else np.zeros(shape, dtype=np.uint8),
        labels=np.concatenate([c.labels for c in chunks]) if chunks else np.zeros(0, dtype=np.int64),
        class_names=listing.class_names,
        spec=spec,
        sources=[s for c in chunks for s in c.sources],
        skipped=listing.skipped + [s for c in chunks for s in c.skipped],
        original_sizes=(np.concatenate([c.original_sizes for c in chunks]) if chunks
                        else np.zeros((0, 2), dtype=np.int64)),
    )
