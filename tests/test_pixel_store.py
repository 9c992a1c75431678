"""Pixels held once: the memory-mapped pixel store, splits as rows into it, the old .npz splits still read, and
stages that read a batch at a time."""

import tracemalloc

import numpy as np
import pytest

from mlops_assets.core.common.storage import publish_built
from mlops_assets.core.data.artifacts import (
    ArtifactFormatError,
    open_dataset,
    open_split,
    read_split_hashes,
    write_dataset,
    write_splits,
)
from mlops_assets.core.data.images import ImageDataset, PreprocessSpec, image_hashes, load_digits_dataset
from mlops_assets.core.data.pixel_store import ImageRows, PixelStoreWriter, open_pixel_store
from mlops_assets.core.quality import data_quality as dq
from resources.artifact_store import ArtifactStore


def random_images(n: int, shape=(1, 32, 32), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), rng.integers(0, 3, size=n).astype(np.int64)


def test_a_dataset_is_stored_once_as_a_memory_map_and_keeps_its_version(tmp_path):
    """The stored dataset hashes exactly as the same images in memory did, so dataset versions do not change."""
    digits = load_digits_dataset()
    version = write_dataset(tmp_path / "d", digits, {"source": "digits"})
    assert version == digits.content_hash()[:16]
    stored = open_dataset(tmp_path / "d")
    assert isinstance(stored.rows.pixels, np.memmap) and stored.rows.pixels.mode == "r"
    assert stored.rows.nbytes == digits.images.nbytes == (tmp_path / "d" / "pixels.u8").stat().st_size
    assert np.array_equal(stored.rows.images(), digits.images)
    assert np.array_equal(stored.rows.labels, digits.labels)
    assert stored.rows.hash_list() == image_hashes(digits.images)
    assert np.array_equal(stored.rows.original_sizes, digits.original_sizes)
    assert stored.class_names == digits.class_names and stored.spec == digits.spec


def test_rows_read_batches_and_selections_of_the_store(tmp_path):
    images, labels = random_images(50)
    writer = PixelStoreWriter(tmp_path / "s", (1, 32, 32))
    writer.append(images[:20], labels[:20], np.full((20, 2), 32))
    writer.append(images[20:], labels[20:], np.full((30, 2), 32))
    rows = writer.finish().select(np.array([1, 2, 3, 10, 40]))
    assert rows.shape == (5, 1, 32, 32) and np.array_equal(rows.labels, labels[[1, 2, 3, 10, 40]])
    assert np.array_equal(rows.images(0, 3), images[1:4])  # contiguous: a slice of the map
    assert np.array_equal(rows.images(), images[[1, 2, 3, 10, 40]])
    assert np.array_equal(rows.take(np.array([4, 0])), images[[40, 1]])
    batches = list(rows.batches(2))
    assert [start for start, _ in batches] == [0, 2, 4] and np.array_equal(np.concatenate([b for _, b in batches]),
                                                                           rows.images())
    scaled = np.concatenate([b for _, b in rows.training_batches(2)])
    assert scaled.dtype == np.float32 and np.array_equal(scaled, rows.images() / np.float32(255))
    assert rows.hash_list() == image_hashes(rows.images())


def test_a_store_with_missing_or_mismatched_files_is_refused(tmp_path):
    images, labels = random_images(4)
    writer = PixelStoreWriter(tmp_path / "s", (1, 32, 32))
    with pytest.raises(ValueError, match="does not fit"):
        writer.append(images[:, :, :16], labels, np.full((4, 2), 32))
    writer.append(images, labels, np.full((4, 2), 32))
    writer.finish()
    with open(tmp_path / "s" / "pixels.u8", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValueError, match="4097 pixel bytes"):
        open_pixel_store(tmp_path / "s")
    (tmp_path / "s" / "labels.npy").unlink()
    with pytest.raises(ValueError, match="labels.npy is missing"):
        open_pixel_store(tmp_path / "s")


def test_splits_are_rows_into_the_dataset_and_copy_no_pixel(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    images, labels = random_images(30)
    dataset = ImageDataset(images, labels, ["a", "b", "c"], PreprocessSpec(32, 32, 1))
    version, dataset_dir = store.publish_built("datasets", lambda d: write_dataset(d, dataset, {}))
    indices = {"train": np.arange(0, 20), "val": np.arange(20, 25), "test": np.array([25, 27, 29])}
    splits_dir = store.publish("splits", "s1", lambda d: write_splits(d, dataset_dir, indices, {"n": 30}))
    assert not list(splits_dir.glob("*.u8")) and sum(f.stat().st_size for f in splits_dir.iterdir()) < 4096
    test = open_split(splits_dir, "test")
    assert np.array_equal(test.images(), images[[25, 27, 29]]) and np.array_equal(test.labels, labels[[25, 27, 29]])
    assert read_split_hashes(splits_dir, ("test",)) == set(image_hashes(images[[25, 27, 29]]))
    with pytest.raises(ArtifactFormatError, match="ascending"):
        write_splits(tmp_path / "bad", dataset_dir, {"train": np.array([3, 1])}, {})
    with pytest.raises(ArtifactFormatError, match="no split 'holdout'"):
        open_split(splits_dir, "holdout")


def test_splits_written_before_the_pixel_store_are_still_read(tmp_path):
    """The assignment lineage and production's training images may point at an old compressed .npz split."""
    images, labels = random_images(12, (1, 8, 8))
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    np.savez_compressed(legacy / "train.npz", images=images, labels=labels, original_sizes=np.full((12, 2), 8))
    split = open_split(legacy, "train")
    assert np.array_equal(split.images(), images) and np.array_equal(split.original_sizes, np.full((12, 2), 8))
    assert read_split_hashes(legacy, ("train",)) == set(image_hashes(images))


def test_an_artifact_versioned_by_its_content_is_published_once(tmp_path):
    def build(directory):
        (directory / "data").write_text("same content")
        return "v1"

    version, target, published = publish_built(tmp_path / "kind", build)
    assert (version, target, published) == ("v1", tmp_path / "kind" / "v1", True)
    assert publish_built(tmp_path / "kind", build)[2] is False  # already there: the new copy is discarded

    def broken(directory):
        (directory / "half").write_text("x")
        raise RuntimeError("decoding failed")

    with pytest.raises(RuntimeError):
        publish_built(tmp_path / "kind", broken)
    assert sorted(p.name for p in (tmp_path / "kind").iterdir()) == ["v1"]  # no staging left behind


def test_the_quality_checks_read_pixels_a_batch_at_a_time(tmp_path):
    """Building the checks' tables from a split directory of 20,000 stored 32×32 images allocates far less than
    the pixels: splits read whole (or converted to float) would allocate at least their 20 MB."""
    images, labels = random_images(20_000)
    dataset = ImageDataset(images, labels, ["a", "b", "c"], PreprocessSpec(32, 32, 1))
    write_dataset(tmp_path / "dataset", dataset, {})
    del images, dataset
    indices = {"train": np.arange(0, 14_000), "val": np.arange(14_000, 17_000), "test": np.arange(17_000, 20_000)}
    (tmp_path / "splits").mkdir()
    write_splits(tmp_path / "splits", tmp_path / "dataset", indices,
                 {"class_names": ["a", "b", "c"], "spec": {"height": 32, "width": 32, "channels": 1}})
    pixel_bytes = 20_000 * 32 * 32
    import pandas  # noqa: F401 - imported before tracing: the import is not what is measured

    tracemalloc.start()
    try:
        frames = dq.frames_from_directory(tmp_path / "splits")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frames.images) == 20_000
    assert peak < 0.6 * pixel_bytes, f"{peak / 1e6:.1f} MB allocated for {pixel_bytes / 1e6:.1f} MB of pixels"


def test_rows_of_in_memory_arrays_keep_their_dtype():
    floats = np.zeros((3, 1, 4, 4), np.float32)
    floats[0, 0, 0, 0] = np.nan
    rows = ImageRows.from_arrays(floats, np.array([0, 1, 2]))
    pixel_min, pixel_max, pixel_mean, n_nan = rows.pixel_stats()
    assert rows.dtype == np.float32 and n_nan.tolist() == [1, 0, 0] and pixel_max.tolist() == [0, 0, 0]


def test_an_upgrade_keeps_every_images_split_from_an_old_npz_version(tmp_path):
    """A store built before the pixel store: its lineage points at compressed .npz splits. The next data_splits
    (in the new layout) keeps each image where the old version put it, however a fresh deal would go."""
    import dagster as dg

    from mlops_assets.build_stage.data import SPLITS_LINEAGE_POINTER, data_splits, lineage_key, raw_images
    from mlops_assets.core.data.splits import SplitFractions, assign_splits
    from testkit.fixtures import make_resources

    resources = make_resources(tmp_path)
    store = resources["artifact_store"]
    digits = load_digits_dataset()
    old = assign_splits(image_hashes(digits.images), digits.labels, SplitFractions(), seed=99).indices

    def legacy(directory):
        for name, rows in old.items():
            np.savez_compressed(directory / f"{name}.npz", images=digits.images[rows], labels=digits.labels[rows])

    store.publish("splits", "legacy-v1", legacy)
    key = lineage_key(SplitFractions(), 42)
    store.write_pointer(SPLITS_LINEAGE_POINTER, {key: "legacy-v1"})
    result = dg.materialize([raw_images, data_splits], resources=resources, instance=dg.DagsterInstance.ephemeral())
    meta = {k: v.value for k, v in result.asset_materializations_for_node("data_splits")[0].metadata.items()}
    assert meta["parent_version"] == "legacy-v1" and meta["images_kept"] == 1797 and meta["images_dealt"] == 0
    for name, rows in old.items():
        assert read_split_hashes(meta["artifact_path"], (name,)) == set(image_hashes(digits.images[rows]))
    assert store.read_pointer(SPLITS_LINEAGE_POINTER)[key] == meta["version"]


def test_rows_at_chosen_positions_come_in_the_training_scale_in_the_order_asked(tmp_path):
    """One way to pick a handful of rows (a sample, the worst mistakes): read where they are, in the order given,
    converted to the training scale; a selection's positions, not the store's."""
    from mlops_assets.core.data.images import to_training_scale

    images, labels = random_images(50)
    writer = PixelStoreWriter(tmp_path / "store", images.shape[1:])
    writer.append(images, labels, np.full((50, 2), 32))
    split = writer.finish().select(np.arange(10, 50, 2))  # store rows 10, 12, ..., 48
    positions = np.array([7, 0, 19, 7])
    picked = split.training_images(positions)
    assert picked.dtype == np.float32 and picked.shape == (4, 1, 32, 32)
    np.testing.assert_array_equal(picked, to_training_scale(images[[24, 10, 48, 24]]))
    assert split.training_images(np.array([], np.int64)).shape == (0, 1, 32, 32)
