"""Prediction ids, feedback validation and storage, the export of labelled production images, and the measurement
of accuracy and bias on labelled traffic: the pure core, on real Parquet files under tmp_path."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.data.features import image_features
from mlops_assets.core.data.image_folder import load_image_folder
from mlops_assets.core.data.images import PreprocessSpec, folder_fingerprint, load_digits_dataset
from mlops_assets.core.monitoring.performance import (
    ACCURACY,
    RECALL_GAP,
    PerformanceThresholds,
    measure,
    measure_window,
)
from mlops_assets.core.serving.feedback import (
    DuplicateFeedback,
    FeedbackItem,
    FeedbackStore,
    UnknownClass,
    UnknownPrediction,
    export_labelled_images,
    labelled_predictions,
    read_feedback,
)
from mlops_assets.core.serving.inference_log import read_window
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from mlops_assets.core.serving.prediction_ids import canonical, new_prediction_ids, prediction_time

T0 = datetime(2026, 11, 22, 10, 20, tzinfo=UTC)
CLASSES = [str(i) for i in range(10)]


def test_prediction_ids_are_distinct_uuid7_that_say_when():
    ids = new_prediction_ids(1000, T0)
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert {prediction_time(i) for i in ids} == {T0}
    assert canonical(ids[0].upper()) == ids[0]
    assert prediction_time(str(uuid.uuid4())) is None and prediction_time("not an id") is None
    beyond_year_9999 = str(uuid.UUID(int=(0xFFFFFFFFFFFF << 80) | (0x7 << 76) | (0b10 << 62)))
    assert prediction_time(beyond_year_9999) is None


@pytest.fixture
def logged(tmp_path):
    """20 digits predicted at T0 (and 5 an hour later), images kept; returns root, ids, labels, images."""
    digits = load_digits_dataset()
    images, labels = digits.images[:25], digits.labels[:25]
    ids = new_prediction_ids(20, T0) + new_prediction_ids(5, T0 + timedelta(hours=1))
    with InferenceLogWriter(tmp_path, keep_images=True, flush_interval_s=0.05) as writer:
        for part, at in ((slice(0, 20), T0), (slice(20, 25), T0 + timedelta(hours=1))):
            predicted = [CLASSES[int(y)] for y in labels[part]]
            assert writer.log_images(images[part], predicted, np.full(len(predicted), 0.9), "v1",
                                     prediction_ids=ids[part], timestamp=at)
    return tmp_path, ids, [CLASSES[int(y)] for y in labels], images


def files(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("part-*.parquet")}


def test_log_rows_carry_the_ids_and_the_images_are_kept_exactly(logged):
    root, ids, _, images = logged
    rows = read_window(root, T0 - timedelta(hours=1), T0 + timedelta(hours=2))
    assert sorted(rows["prediction_id"]) == sorted(ids)
    kept = read_window(root, T0 - timedelta(hours=1), T0 + timedelta(hours=2), "inference_images")
    first = kept.set_index("prediction_id").loc[ids[0]]
    pixels = np.frombuffer(first["pixels"], np.uint8).reshape(first["channels"], first["height"], first["width"])
    np.testing.assert_array_equal(pixels, images[0])


def test_feedback_is_stored_in_the_hour_of_its_prediction_never_rewriting_anything(logged):
    root, ids, truth, _ = logged
    before = files(root)
    store = FeedbackStore(root)
    received = T0 + timedelta(days=2)  # labels arrive days later ...
    assert store.record([FeedbackItem(i, t) for i, t in zip(ids[18:23], truth[18:23], strict=True)], CLASSES,
                        received_at=received) == 5
    after = files(root)
    assert {p: m for p, m in after.items() if p in before} == before  # nothing rewritten
    new = sorted(str(p.relative_to(root)) for p in set(after) - set(before))
    assert [n.rsplit("/", 1)[0] for n in new] == ["feedback/dt=2026-11-22/hour=10", "feedback/dt=2026-11-22/hour=11"]
    assert all(n.rsplit("/", 1)[1].startswith(f"part-{int(received.timestamp() * 1000)}") for n in new)
    feedback = read_feedback(root, T0.replace(minute=0), T0 + timedelta(hours=2))  # ... beside the predictions
    assert sorted(feedback["prediction_id"]) == sorted(ids[18:23])
    assert (feedback["received_at"] == pd.Timestamp(received)).all()


@pytest.mark.parametrize("items, error, index, message", [
    (lambda ids: [FeedbackItem(ids[0], "3"), FeedbackItem(str(uuid.uuid4()), "3")], UnknownPrediction, 1,
     "no prediction has id"),
    (lambda ids: [FeedbackItem(new_prediction_ids(1, T0)[0], "3")], UnknownPrediction, 0,
     "no logged prediction has id"),
    (lambda ids: [FeedbackItem(new_prediction_ids(1, datetime.now(UTC) + timedelta(days=1))[0], "3")],
     UnknownPrediction, 0, "no prediction has id"),
    (lambda ids: [FeedbackItem(ids[0], "3"), FeedbackItem(ids[1], "cat")], UnknownClass, 1, "'cat' is not a class"),
    (lambda ids: [FeedbackItem(ids[0], "3"), FeedbackItem(ids[0].upper(), "3")], DuplicateFeedback, 1,
     "appears twice in this batch"),
])
def test_a_batch_with_one_bad_item_is_refused_whole_naming_the_item(logged, items, error, index, message):
    root, ids, _, _ = logged
    before = files(root)
    with pytest.raises(error, match=message) as refused:
        FeedbackStore(root).record(items(ids), CLASSES)
    assert refused.value.index == index and refused.value.field.startswith(f"feedback.{index}.")
    assert files(root) == before


def test_a_prediction_is_labelled_once(logged):
    root, ids, truth, _ = logged
    store = FeedbackStore(root)
    store.record([FeedbackItem(ids[0], truth[0])], CLASSES)
    with pytest.raises(DuplicateFeedback, match="already has feedback"):
        store.record([FeedbackItem(ids[1], truth[1]), FeedbackItem(ids[0], "7")], CLASSES)
    with pytest.raises(DuplicateFeedback):  # a fresh store (another process) reads it from disk
        FeedbackStore(root).record([FeedbackItem(ids[0], "7")], CLASSES)
    assert FeedbackStore(root).record([FeedbackItem(ids[1], truth[1])], CLASSES) == 1


def test_labelled_predictions_join_the_feedback_and_count_the_traffic(logged):
    root, ids, truth, _ = logged
    FeedbackStore(root).record([FeedbackItem(i, "0") for i in ids[:4]], CLASSES)
    joined, per_version = labelled_predictions(root, T0.replace(minute=0), T0.replace(minute=0) + timedelta(hours=1))
    assert per_version == {"v1": 20}
    assert sorted(joined["prediction_id"]) == sorted(ids[:4]) and set(joined["label"]) == {"0"}
    assert joined.set_index("prediction_id").loc[ids[1], "predicted_class"] == truth[1]


def test_export_writes_each_labelled_image_once_into_the_source_and_changes_its_fingerprint(logged, tmp_path):
    root, ids, truth, images = logged
    digits = load_digits_dataset()
    source = tmp_path / "source"
    from mlops_assets.tools.simulator import write_labelled_images

    write_labelled_images(source, digits.images[100:160], digits.labels[100:160], CLASSES, "digit")
    before = folder_fingerprint(source)
    FeedbackStore(root).record([FeedbackItem(i, t) for i, t in zip(ids[:6], truth[:6], strict=True)], CLASSES)
    report = export_labelled_images(root, source)
    assert report.written == 6 and report.without_image == 0 and sum(report.by_class.values()) == 6
    assert folder_fingerprint(source) != before
    again = export_labelled_images(root, source)
    assert again.written == 0 and again.existing == 6
    dataset = load_image_folder(source, PreprocessSpec(height=8, width=8, channels=1))  # what training reads
    exported = {Path(name).stem.removeprefix("production_"): k for k, name in enumerate(dataset.sources)
                if "production_" in name}
    assert sorted(exported) == sorted(ids[:6]) and dataset.images.shape[0] == 66
    for k, prediction_id in enumerate(ids[:6]):
        np.testing.assert_array_equal(dataset.images[exported[prediction_id]], images[k])
        assert dataset.class_names[dataset.labels[exported[prediction_id]]] == truth[k]


# -- the measurement ---------------------------------------------------------------------------------
def labelled_rows(true: list[str], predicted: list[str], version: str = "v1") -> pd.DataFrame:
    return pd.DataFrame({"model_version": version, "predicted_class": predicted, "label": true})


def test_a_degraded_class_is_a_recall_gap_breach_in_words():
    true = ["a"] * 50 + ["b"] * 50
    predicted = ["a"] * 50 + ["b"] * 20 + ["a"] * 30  # b recalled 40% of the time, a 100%
    result = measure(labelled_rows(true, predicted), "v3", 150, ["a", "b"], PerformanceThresholds(), "2026-11-22T10")
    assert result.judged and result.labelled == 100 and result.predictions == 150
    assert result.accuracy == pytest.approx(0.70) and result.recall_gap == pytest.approx(0.60)
    assert set(result.breaches) == {ACCURACY, RECALL_GAP}
    assert ("model v3 recalls class 'b' 60% less often than class 'a' (40% vs 100% of their labelled images"
            in result.breaches[RECALL_GAP])
    assert "right on only 70% of 100 labelled production predictions" in result.breaches[ACCURACY]


def test_too_few_labels_are_not_judged_and_small_classes_stay_out_of_the_gap():
    thresholds = PerformanceThresholds(min_labelled=50, min_class_labelled=10)
    few = measure(labelled_rows(["a"] * 5, ["b"] * 5), "v1", 5, ["a", "b"], thresholds, "w")
    assert not few.judged and few.breaches == {} and "too few to judge" in few.reason
    rows = labelled_rows(["a"] * 60 + ["b"] * 3, ["a"] * 60 + ["a"] * 3)  # b: 3 labels, all wrong
    judged = measure(rows, "v1", 63, ["a", "b"], thresholds, "w")
    assert judged.judged and judged.recall_gap is None and RECALL_GAP not in judged.breaches


def test_each_version_is_measured_apart_and_the_window_as_a_whole():
    rows = pd.concat([labelled_rows(["a", "b"] * 30, ["a", "b"] * 30, "v1"),
                      labelled_rows(["a", "b"] * 30, ["a", "a"] * 30, "v2")])
    results = measure_window(rows, {"v1": 70, "v2": 60}, {"v1": ["a", "b"]}, PerformanceThresholds(), "w")
    assert [r.model_version for r in results] == ["v1", "v2", "all"]
    assert results[0].breaches == {} and set(results[1].breaches) == {ACCURACY, RECALL_GAP}
    assert results[2].labelled == 120 and results[2].accuracy == pytest.approx(0.75)


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="min_accuracy must be in"):
        PerformanceThresholds(min_accuracy=1.5)


def test_the_export_cli_writes_into_the_image_folder_of_the_settings(logged, tmp_path, monkeypatch, capsys):
    import json

    from mlops_assets.tools.feedback_cli import main

    root, ids, truth, _ = logged
    FeedbackStore(root).record([FeedbackItem(i, t) for i, t in zip(ids[:3], truth[:3], strict=True)], CLASSES)
    monkeypatch.delenv("MLOPS_IMAGE_FOLDER", raising=False)
    assert main(["export", "--artifacts", str(root)]) == 2
    assert "pass --to or set MLOPS_IMAGE_FOLDER" in capsys.readouterr().err
    monkeypatch.setenv("MLOPS_IMAGE_FOLDER", str(tmp_path / "source"))
    monkeypatch.setenv("MLOPS_ARTIFACT_ROOT", str(root))
    assert main(["export", "--since", "2026-11-23"]) == 0  # after the predictions: nothing
    assert json.loads(capsys.readouterr().out)["written"] == 0
    assert main(["export"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 3
    assert len(list((tmp_path / "source").rglob("production_*.png"))) == 3


def test_an_id_is_checked_against_only_the_files_that_can_hold_it(logged):
    """With a file per flush, an hour holds thousands of part files: the lookup opens those whose name declares
    the prediction's time (here a damaged file elsewhere in the hour is never opened), and unnamed older ones."""
    root, ids, truth, _ = logged
    elsewhere = root / "inference_log" / "dt=2026-11-22" / "hour=10" / "part-1763805600000-1763805600999-x.parquet"
    elsewhere.write_bytes(b"not parquet: opening it would fail")
    assert FeedbackStore(root).record([FeedbackItem(ids[0], truth[0])], CLASSES) == 1
    unnamed = elsewhere.with_name("part-0123456789abcdef.parquet")
    elsewhere.rename(unnamed)
    with pytest.raises(Exception):  # noqa: B017 - a file without a declared span is always read
        FeedbackStore(root).record([FeedbackItem(ids[1], truth[1])], CLASSES)


def test_a_just_made_prediction_is_known_at_once_and_two_writers_never_label_it_twice(tmp_path):
    """Another worker's writer has not written its Parquet part yet (it converts every few seconds): the id is in
    its journal, so it is labelled at once, without waiting; an unknown fresh id is refused at once. And concurrent
    batches for one prediction (two workers) store exactly one label."""
    import threading

    digits = load_digits_dataset()
    now = datetime.now(UTC)
    ids = new_prediction_ids(1, now)
    with InferenceLogWriter(tmp_path, flush_interval_s=3600, flush_rows=10**6) as other_worker:
        assert other_worker.log(image_features(digits.images[:1]), ["3"], [0.9], "v1", prediction_ids=ids,
                                timestamp=now)
        assert FeedbackStore(tmp_path).record([FeedbackItem(ids[0], "3")], CLASSES) == 1
        with pytest.raises(UnknownPrediction):
            FeedbackStore(tmp_path).record([FeedbackItem(new_prediction_ids(1, now)[0], "3")], CLASSES)
        assert other_worker.stats().written == 0, "the label was found in the journal, not in a flushed part"
    with pytest.raises(DuplicateFeedback):  # converted since: the same prediction, found in Parquet now
        FeedbackStore(tmp_path).record([FeedbackItem(ids[0], "3")], CLASSES)

    other = new_prediction_ids(1, now)
    with InferenceLogWriter(tmp_path, flush_interval_s=0.05) as writer:
        writer.log(image_features(digits.images[:1]), ["3"], [0.9], "v1", prediction_ids=other, timestamp=now)
    outcomes: list[str] = []

    def label_it():
        try:
            outcomes.append(str(FeedbackStore(tmp_path).record([FeedbackItem(other[0], "3")], CLASSES)))
        except DuplicateFeedback:
            outcomes.append("duplicate")

    writers = [threading.Thread(target=label_it) for _ in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert sorted(outcomes) == ["1"] + ["duplicate"] * 5
