"""Build stage 1: the labelled images and their versioned train/val/test splits."""


import hashlib

import dagster as dg
from pydantic import Field

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.data.artifacts import (
    SplitLedger,
    open_dataset,
    read_split_hashes,
    read_split_ledger,
    write_split_ledger,
    write_splits,
)
from mlops_assets.core.data.image_folder import NESTED_FOLDER, shrink_warning, skipped_by_reason
from mlops_assets.core.data.splits import SPLIT_NAMES, SplitFractions, assign_splits, class_counts
from mlops_assets.metadata import short_hash
from mlops_assets.refs import DatasetRef, SplitsRef
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource

# 2: stable assignment carried forward; 3: rows into the dataset's pixel store; 4: the lineage's ledger of every
# image ever seen (assignments.npz), not only the latest version's images, is carried forward
SPLIT_CODE_VERSION = "4"
SPLITS_LINEAGE_POINTER = "splits-lineage"


@dg.asset(
    kinds={"numpy"},
    code_version="2",  # 2: pixels stored once, uint8 and memory-mapped, decoded in parallel
    description=(
        "The labelled images, decoded to one geometry (by a process per core on big folders) and stored once, "
        "as uint8 in a memory-mapped pixel store, under their content hash. Its data version is that hash, so "
        "adding or changing images marks everything downstream stale."
    ),
)
def raw_images(
    context: dg.AssetExecutionContext, dataset_source: DatasetSource, artifact_store: ArtifactStore
) -> dg.MaterializeResult[DatasetRef]:
    fingerprint = dataset_source.fingerprint()  # before reading: a file added meanwhile reads as new next time
    version, directory = artifact_store.publish_built(
        "datasets", lambda d: dataset_source.write_dataset(d, {"source": dataset_source.describe()})
    )
    dataset = open_dataset(directory)
    images = dataset.rows
    for path, reason in dataset.skipped:
        context.log.warning(f"skipped {path}: {reason}")
    by_reason = skipped_by_reason(dataset.skipped)
    nested = [path for path, reason in dataset.skipped if reason.startswith(NESTED_FOLDER)]
    if nested:
        context.log.warning(f"{len(nested)} nested folder(s) skipped, their images not read: {', '.join(nested)}")
    counts = class_counts(images.labels, len(dataset.class_names))
    ref = DatasetRef(
        version=version,
        path=str(directory),
        class_names=dataset.class_names,
        spec=dataset.spec.as_dict(),
        n_images=len(images),
        source_fingerprint=fingerprint,
    )
    skipped_md = markdown_table(["file", "reason"], dataset.skipped) if dataset.skipped else "none"
    geometry_source = dataset_source.describe_geometry()
    too_small = shrink_warning(images.original_sizes, dataset.spec, geometry_source)
    context.log.info(f"images converted to {dataset.spec.channels}×{dataset.spec.height}×{dataset.spec.width} "
                     f"(channels×height×width), from {geometry_source}")
    if too_small:
        context.log.warning(too_small)
    return dg.MaterializeResult(
        value=ref,
        data_version=dg.DataVersion(version),
        metadata={
            "version": version,
            "source": dataset_source.describe(),
            "source_fingerprint": fingerprint,
            "artifact_path": dg.MetadataValue.path(str(directory)),
            "n_images": len(images),
            "n_classes": len(dataset.class_names),
            "image_shape": f"{dataset.spec.channels}×{dataset.spec.height}×{dataset.spec.width}",
            "geometry_source": geometry_source,
            "geometry_warning": too_small or "none",
            "pixel_bytes": images.nbytes,
            "n_skipped": len(dataset.skipped),
            "skipped_by_reason": dg.MetadataValue.json(by_reason),
            "skipped_files": dg.MetadataValue.md(skipped_md),
            "class_balance": dg.MetadataValue.md(
                markdown_table(["class", "images"], zip(dataset.class_names, counts, strict=True))
            ),
        },
    )


class SplitConfig(dg.Config):
    train_fraction: float = Field(default=0.70, description="Share of image groups for training.")
    val_fraction: float = Field(default=0.15, description="Share for model selection.")
    test_fraction: float = Field(default=0.15, description="Share held out for evaluation.")
    seed: int = Field(
        default=42,
        description=(
            "Order in which new images are dealt. Images already assigned keep their split; changing the "
            "seed or the fractions starts a new assignment (the gate then excludes production's training "
            "images from the comparison)."
        ),
    )


def lineage_key(fractions: SplitFractions, seed: int) -> str:
    """Split assignments are carried forward per (fractions, seed): the same settings, the same lineage."""
    return f"seed{seed}-{fractions.train:g}-{fractions.val:g}-{fractions.test:g}"


def previous_assignment(artifact_store: ArtifactStore, key: str) -> tuple[str | None, dict[str, str]]:
    """The latest splits version of this lineage and its ledger: the split of every image the lineage has ever
    seen, so an image absent from some versions (removed for a while, its class folder moved away) gets its
    first split back. A version written before ledgers remembers only its own images."""
    version = artifact_store.read_pointer(SPLITS_LINEAGE_POINTER).get(key)
    if not version or not artifact_store.exists("splits", version):
        return None, {}
    directory = artifact_store.path("splits", version)
    ledger = read_split_ledger(directory)
    if ledger is not None:
        return version, ledger
    assignment = {}
    for name in SPLIT_NAMES:
        for digest in read_split_hashes(directory, (name,)):
            assignment[digest] = name
    return version, assignment


def record_lineage(artifact_store: ArtifactStore, key: str, version: str) -> None:
    pointer = artifact_store.read_pointer(SPLITS_LINEAGE_POINTER)
    artifact_store.write_pointer(SPLITS_LINEAGE_POINTER, {**pointer, key: version})


@dg.asset(
    kinds={"numpy", "great_expectations"},
    code_version=SPLIT_CODE_VERSION,
    description=(
        "Stratified train/val/test splits with identical images kept together (no leakage) and every "
        "image kept in the split it was first given, even after being absent from some versions (a ledger of "
        "every image the lineage has seen; new images are dealt to restore the fractions). "
        "Each split is a list of rows into the dataset's pixel store: pixels are not copied. "
        "Versioned by the assignment itself."
    ),
)
def data_splits(
    context: dg.AssetExecutionContext, config: SplitConfig, raw_images: DatasetRef,
    artifact_store: ArtifactStore,
) -> dg.MaterializeResult[SplitsRef]:
    import numpy as np
    fractions = SplitFractions(config.train_fraction, config.val_fraction, config.test_fraction)
    dataset = open_dataset(raw_images.path)
    labels = dataset.rows.labels
    key = lineage_key(fractions, config.seed)
    parent, previous = previous_assignment(artifact_store, key)
    # The content hashes were computed once, when the images were decoded: no pixel is read here.
    assignment = assign_splits(dataset.rows.hash_list(), labels, fractions, config.seed, previous)
    indices = assignment.indices
    # The ledger grows, never forgets: images of this version are added with their split (which the previous
    # ledger decided whenever it knew them).
    ledger = SplitLedger.from_mapping({**previous, **assignment.split_of_hash()}, SPLIT_NAMES)
    rows_digest = {n: hashlib.sha256(i.tobytes()).hexdigest() for n, i in indices.items()}
    version = short_hash(raw_images.version, key, SPLIT_CODE_VERSION, rows_digest, ledger.digest())
    n_classes = len(dataset.class_names)
    per_split = {name: class_counts(labels[idx], n_classes) for name, idx in indices.items()}
    small = {dataset.class_names[label]: n for label, n in assignment.small_classes.items()}
    if small:
        context.log.warning(f"classes with fewer than 3 distinct images cannot fill three splits: {small}")

    def build(directory):
        write_split_ledger(directory, ledger)
        write_splits(
            directory,
            raw_images.path,
            indices,
            {
                "version": version,
                "dataset_version": raw_images.version,
                "source_fingerprint": raw_images.source_fingerprint,
                "class_names": dataset.class_names,
                "spec": dataset.spec.as_dict(),
                "fractions": vars(fractions),
                "seed": config.seed,
                "lineage": key,
                "parent": parent,
                "kept": assignment.kept,
                "dealt": assignment.dealt,
                "ledger_images": len(ledger.hashes),
                "small_classes": small,
                "counts": {name: int(len(idx)) for name, idx in indices.items()},
                "class_counts": per_split,
            },
        )

    directory = artifact_store.publish("splits", version, build)
    record_lineage(artifact_store, key, version)
    counts = {name: int(len(indices[name])) for name in SPLIT_NAMES}
    context.log.info(
        f"splits {version}: {counts}; {assignment.kept} image(s) kept their split from "
        f"{parent or 'no previous version'}'s ledger, {assignment.dealt} new image(s) dealt; the ledger remembers "
        f"{len(ledger.hashes)} image(s)"
    )
    balance_rows = [
        [cls, *(per_split[name][i] for name in SPLIT_NAMES)] for i, cls in enumerate(dataset.class_names)
    ]
    return dg.MaterializeResult(
        value=SplitsRef(
            version=version,
            path=str(directory),
            dataset_version=raw_images.version,
            class_names=dataset.class_names,
            spec=dataset.spec.as_dict(),
            counts=counts,
            source_fingerprint=raw_images.source_fingerprint,
        ),
        data_version=dg.DataVersion(version),
        metadata={
            "version": version,
            "source_version": raw_images.version,
            "parent_version": parent or "none",
            "images_kept": assignment.kept,
            "images_dealt": assignment.dealt,
            "ledger_images": len(ledger.hashes),
            "small_classes": dg.MetadataValue.json(small),
            "artifact_path": dg.MetadataValue.path(str(directory)),
            **{f"rows_{name}": counts[name] for name in SPLIT_NAMES},
            "class_balance": dg.MetadataValue.md(markdown_table(["class", *SPLIT_NAMES], balance_rows)),
            "min_class_share_train": float(
                np.min(per_split["train"]) / max(1, counts["train"])
            ),
        },
    )
