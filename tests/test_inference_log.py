"""The inference log writer: hour-partitioned append-only Parquet, and it never fails a prediction."""

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mlops_assets.core.data.features import (
    CONFIDENCE,
    PREDICTED_CLASS,
    FeatureInputError,
    feature_columns,
    image_features,
)
from mlops_assets.core.serving.inference_log import hour_part_files, read_hour, read_window
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter

HOUR = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)


def batch(n: int, seed: int = 0, channels: int = 1):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, channels, 8, 8), dtype=np.uint8)
    return image_features(images), [str(i % 3) for i in range(n)], rng.uniform(0.5, 1.0, n)


def test_features_same_for_uint8_and_training_scale():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 6, 7), dtype=np.uint8)
    a = image_features(images, original_sizes=[(64, 48)] * 5)
    b = image_features(images.astype(np.float32) / 255.0, original_sizes=[(64, 48)] * 5)
    assert list(a.columns) == feature_columns(3)
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), atol=1e-5)
    assert (a["original_height"] == 64).all() and (a["original_width"] == 48).all()
    assert image_features(images).filter(like="original_").isna().all().all()  # unknown, not invented
    black = image_features(np.zeros((1, 1, 8, 8), np.uint8))
    assert black["dark_fraction"].item() == 1.0 and black["saturated_fraction"].item() == 0.0
    assert black["contrast"].item() == 0.0
    with pytest.raises(FeatureInputError):
        image_features(np.zeros((2, 2, 8, 8), np.uint8))
    with pytest.raises(FeatureInputError):
        image_features(np.zeros((2, 1, 8, 8), np.uint8), original_sizes=[(8, 8)])


def test_rows_land_in_their_hour_partition_atomically(tmp_path):
    clock = iter([HOUR, HOUR, HOUR + timedelta(hours=1)])
    with InferenceLogWriter(tmp_path, flush_interval_s=0.05, clock=lambda: next(clock)) as writer:
        for seed in range(3):
            features, labels, conf = batch(10, seed)
            assert writer.log(features, labels, conf, "v1")
        assert writer.flush(5.0)
        stats = writer.stats()
    assert stats.written == 30 and stats.dropped == 0 and stats.last_error is None
    files = hour_part_files(tmp_path, HOUR)
    assert files and all(f.parent.name == "hour=10" and f.parent.parent.name == "dt=2026-11-22" for f in files)
    assert not list(tmp_path.rglob(".*.tmp")), "no temporary file may be left behind"
    rows = read_hour(tmp_path, HOUR)
    assert len(rows) == 20
    assert {PREDICTED_CLASS, CONFIDENCE, "model_version", "timestamp", "mean_c0"} <= set(rows.columns)
    assert len(read_hour(tmp_path, HOUR + timedelta(hours=1))) == 10
    assert len(read_window(tmp_path, HOUR - timedelta(hours=1), HOUR + timedelta(hours=2))) == 30


def test_full_queue_drops_and_counts_without_raising(tmp_path):
    writer = InferenceLogWriter(tmp_path, max_queue_rows=10, flush_interval_s=0.05)
    features, labels, conf = batch(11)
    assert writer.log(features, labels, conf, "v1") is False
    assert writer.dropped == 11 and "queue full" in writer.last_error
    writer.close()


def test_unwritable_directory_drops_counts_and_reports(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    writer = InferenceLogWriter(blocker, flush_interval_s=0.05)
    features, labels, conf = batch(7)
    assert writer.log(features, labels, conf, "v1") is False  # the journal refused it: known at once
    assert writer.flush(5.0)
    stats = writer.stats()
    assert stats.written == 0 and stats.dropped == 7 and stats.last_error
    writer.close()


def test_bad_input_is_dropped_not_raised(tmp_path):
    with InferenceLogWriter(tmp_path, flush_interval_s=0.05) as writer:
        features, labels, conf = batch(4)
        assert writer.log(features, labels[:2], conf, "v1") is False
        assert writer.log(None, labels, conf, "v1") is False
        assert writer.dropped == 4 and writer.last_error


def test_log_does_not_block_on_a_slow_disk_and_a_refused_write_is_retried(tmp_path, monkeypatch):
    """A failing Parquet write neither blocks log() nor loses the rows: the journal keeps them, and the next
    round writes them once the disk takes them again."""
    import mlops_assets.core.serving.inference_log_writer as module
    from mlops_assets.core.serving.inference_journal import segment_files

    def slow_write(*args, **kwargs):
        time.sleep(0.2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "write_part", slow_write)
    writer = InferenceLogWriter(tmp_path, flush_rows=1000, flush_interval_s=0.01)
    features, labels, conf = batch(32)
    began = time.perf_counter()
    for _ in range(50):
        writer.log(features, labels, conf, "v1", timestamp=HOUR)
    assert time.perf_counter() - began < 0.4, "log() must return without waiting for the disk"
    assert writer.flush(10.0)
    stats = writer.stats()
    assert stats.written == 0 and stats.dropped == 0 and stats.queued == 50 * 32
    assert "No space left" in stats.last_error and segment_files(tmp_path)
    monkeypatch.undo()
    assert writer.flush(10.0) and writer.flush(10.0)
    writer.close()
    assert writer.stats().written == 50 * 32 and writer.stats().queued == 0
    assert len(read_hour(tmp_path, HOUR)) == 50 * 32 and segment_files(tmp_path) == []


def test_log_images_defers_features_to_the_writer_thread(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.random((12, 1, 8, 8), dtype=np.float32)
    clock = lambda: HOUR  # noqa: E731
    with InferenceLogWriter(tmp_path / "a", flush_interval_s=0.05, clock=clock) as a:
        assert a.log_images(images, ["x"] * 12, np.full(12, 0.7), "v1", original_sizes=[(30, 20)] * 12)
    with InferenceLogWriter(tmp_path / "b", flush_interval_s=0.05, clock=clock) as b:
        assert b.log(image_features(images, [(30, 20)] * 12), ["x"] * 12, np.full(12, 0.7), "v1")
    rows_a, rows_b = read_hour(tmp_path / "a", HOUR), read_hour(tmp_path / "b", HOUR)
    assert len(rows_a) == 12 and rows_a.drop(columns="prediction_id").equals(rows_b.drop(columns="prediction_id"))
    assert (rows_a["original_height"] == 30).all()


def test_many_single_image_batches_are_featurised_together_and_exactly(tmp_path):
    """One image per request is the common case: the writer batches their features, and the rows are
    the ones each request would have given on its own; a malformed batch loses only its own rows."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(40, 1, 8, 8), dtype=np.uint8)
    clock = iter([HOUR + timedelta(seconds=i) for i in range(41)])
    with InferenceLogWriter(tmp_path, flush_interval_s=60, flush_rows=10_000, clock=lambda: next(clock)) as writer:
        for i in range(40):
            if i == 20:  # a batch whose sizes do not match its images: rejected when written
                writer.log_images(images[:2], ["1", "2"], [0.5, 0.5], "v1", original_sizes=[(9, 9)] * 3)
            sizes = [(8 + i, 16)] if i % 2 else None
            writer.log_images(images[i : i + 1], [str(i % 3)], [0.9], f"v{i % 2}", original_sizes=sizes)
        assert writer.flush(10.0)
        stats = writer.stats()
    assert stats.written == 40 and stats.dropped == 2 and "original sizes" in stats.last_error
    rows = read_hour(tmp_path, HOUR).sort_values("timestamp").reset_index(drop=True)
    expected = image_features(images, [(8 + i, 16) if i % 2 else (np.nan, np.nan) for i in range(40)])
    np.testing.assert_allclose(rows[list(expected.columns)].to_numpy(float), expected.to_numpy(float))
    assert rows["original_height"].isna().sum() == 20  # the batch endpoint cannot know the size before resizing
    assert rows["model_version"].tolist() == [f"v{i % 2}" for i in range(40)]
    assert rows[PREDICTED_CLASS].tolist() == [str(i % 3) for i in range(40)]


def test_kept_images_of_many_single_image_batches_are_framed_together_and_exactly(tmp_path, monkeypatch):
    """The writer thread holds the GIL while it builds frames; one DataFrame per request (0.3 ms each) for the
    kept images held it for ~300 ms per 1000 requests, which stalled the service's requests (the c=1 tail,
    BENCHMARKS.md). The images of a flush are framed together, and each comes back as it was served."""
    import pandas

    from mlops_assets.core.serving import inference_log_writer

    frames = []

    class CountingPandas:
        def __getattr__(self, name):
            return getattr(pandas, name)

        def DataFrame(self, *args, **kwargs):  # noqa: N802 - stands in for pandas.DataFrame
            frames.append(1)
            return pandas.DataFrame(*args, **kwargs)

    monkeypatch.setattr(inference_log_writer, "pd", CountingPandas())
    rng = np.random.default_rng(5)
    uint8 = rng.integers(0, 256, size=(300, 1, 8, 8), dtype=np.uint8)
    scaled = uint8[:200].astype(np.float32) / 255  # the training scale, as /classify receives it
    with InferenceLogWriter(tmp_path, flush_interval_s=60, flush_rows=10_000, keep_images=True,
                            clock=lambda: HOUR) as writer:
        for i in range(200):
            writer.log_images(scaled[i : i + 1], ["a"], [0.9], "v1")
        for i in range(200, 300):
            writer.log_images(uint8[i : i + 1], ["b"], [0.9], "v1", original_sizes=[(40, 30)])
        assert writer.flush(10.0)
    assert len(frames) <= 4, f"{len(frames)} DataFrames built for the images of one flush of 300 requests"
    kept = read_window(tmp_path, HOUR - timedelta(hours=1), HOUR + timedelta(hours=1), dataset="inference_images")
    logged = read_hour(tmp_path, HOUR)
    assert len(kept) == 300 and set(kept["prediction_id"]) == set(logged["prediction_id"])
    pixels = np.stack([np.frombuffer(p, np.uint8) for p in kept.sort_values("prediction_id")["pixels"]])
    order = logged.sort_values("prediction_id").index  # rows are written in logging order
    np.testing.assert_array_equal(pixels, uint8.reshape(300, -1)[order])
    assert (kept[["channels", "height", "width"]].to_numpy() == [1, 8, 8]).all()


def test_flush_returns_under_continuous_traffic_once_the_earlier_rows_are_written(tmp_path):
    """A flush waits for the rows queued before it, not for an empty queue, which never comes while a service
    keeps predicting (the feedback endpoint flushes before it checks ids)."""
    import threading

    features, labels, conf = batch(4)
    stop = threading.Event()
    with InferenceLogWriter(tmp_path, flush_interval_s=0.5, flush_rows=10_000, max_queue_rows=5_000) as writer:
        def predict_forever():
            while not stop.is_set():
                writer.log(features, labels, conf, "v1")
                time.sleep(0.002)

        producer = threading.Thread(target=predict_forever)
        producer.start()
        try:
            assert writer.log(features, labels, conf, "v1", prediction_ids=[f"mine-{i}" for i in range(4)])
            assert writer.flush(timeout=20.0), "flush never ended while traffic continued"
            now = datetime.now(UTC)
            rows = read_window(tmp_path, now - timedelta(hours=1), now + timedelta(hours=1))
            assert {f"mine-{i}" for i in range(4)} <= set(rows["prediction_id"])
        finally:
            stop.set()
            producer.join()


def test_part_files_are_named_by_the_prediction_times_they_hold(tmp_path):
    from mlops_assets.core.serving.inference_log import part_span
    from mlops_assets.core.serving.prediction_ids import epoch_ms

    features, labels, conf = batch(3)
    with InferenceLogWriter(tmp_path, flush_interval_s=0.05) as writer:
        writer.log(features, labels, conf, "v1", timestamp=HOUR)
    (path,) = hour_part_files(tmp_path, HOUR)
    assert part_span(path) == (epoch_ms(HOUR), epoch_ms(HOUR))
    assert part_span(tmp_path / "part-0123456789abcdef.parquet") is None  # files named before: no span


KILLED_WRITER = """
import sys, time
import numpy as np
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from mlops_assets.core.serving.prediction_ids import new_prediction_ids
from datetime import UTC, datetime
writer = InferenceLogWriter(sys.argv[1], flush_interval_s=3600, flush_rows=10**6, keep_images=True)
rng = np.random.default_rng(0)
for i in range(int(sys.argv[2])):
    now = datetime.now(UTC)
    ids = new_prediction_ids(3, now)
    writer.log_images(rng.random((3, 1, 8, 8), dtype=np.float32), ["1", "2", "3"], [0.9] * 3, "v1",
                      prediction_ids=ids, timestamp=now)
    print(" ".join(ids), flush=True)  # answered: only now may the client see the ids
print("done", flush=True)
time.sleep(600)
"""


def test_a_killed_writer_loses_no_answered_prediction(tmp_path):
    """SIGKILL of the service's process: every batch log() returned for is in the journal (the kernel has it), and
    the next writer on the artifact root turns it into Parquet; its ids can be labelled."""
    import os
    import signal
    import subprocess
    import sys

    from mlops_assets.core.serving.feedback import FeedbackItem, FeedbackStore

    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), "40"], stdout=subprocess.PIPE,
                             text=True, env={**os.environ})
    answered: list[str] = []
    try:
        for line in child.stdout:
            if line.strip() == "done":
                break
            answered += line.split()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert len(answered) == 120
    now = datetime.now(UTC)

    def logged_ids(dataset: str = "inference_log") -> set[str]:
        rows = read_window(tmp_path, now - timedelta(hours=2), now + timedelta(hours=1), dataset=dataset)
        return set(rows["prediction_id"]) if len(rows) else set()

    # the service's next start: two workers, both scanning for dead writers' journals
    with InferenceLogWriter(tmp_path, flush_interval_s=0.05, keep_images=True) as survivor, \
            InferenceLogWriter(tmp_path, flush_interval_s=0.05, keep_images=True) as sibling:
        deadline = time.monotonic() + 20
        while not set(answered) <= logged_ids() and time.monotonic() < deadline:
            survivor.flush(1.0)
        assert set(answered) - logged_ids() == set(), "answered predictions missing from the inference log"
        sibling.flush(5.0)
        assert survivor.stats().recovered + sibling.stats().recovered == 120, "one segment converted twice"
    rows = read_window(tmp_path, now - timedelta(hours=2), now + timedelta(hours=1))
    assert len(rows) == 120 and rows["prediction_id"].is_unique
    assert logged_ids("inference_images") == set(answered)
    from mlops_assets.core.serving.inference_journal import segment_files

    assert segment_files(tmp_path) == []
    assert FeedbackStore(tmp_path).record([FeedbackItem(answered[-1], "3")], [str(i) for i in range(10)]) == 1


def test_a_torn_journal_record_loses_only_itself(tmp_path):
    """A process killed in the middle of a write leaves a partial record at the end of its segment: the whole
    records before it are converted, the partial one is not read as garbage."""
    from mlops_assets.core.serving.inference_journal import journal_root, segment_files

    features, labels, conf = batch(5)
    with InferenceLogWriter(tmp_path / "src", flush_interval_s=3600, flush_rows=10**6) as writer:
        writer.log(features, labels, conf, "v1", timestamp=HOUR)
        writer.log(features, labels, conf, "v1", timestamp=HOUR)
        (segment,) = segment_files(tmp_path / "src")
        data = segment.read_bytes()
        journal_root(tmp_path / "dst").mkdir(parents=True)
        (journal_root(tmp_path / "dst") / segment.name).write_bytes(data[: len(data) - 7])
    with InferenceLogWriter(tmp_path / "dst", flush_interval_s=0.05) as survivor:
        assert survivor.flush(10.0)
    assert len(read_hour(tmp_path / "dst", HOUR)) == 5
