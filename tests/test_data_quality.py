"""Data-quality checks: the GX suites on synthetic splits, and the blocking checks on the real assets."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.build_stage.data import data_splits, raw_images
from mlops_assets.build_stage.validation import data_quality_checks
from mlops_assets.core.data.splits import SPLIT_NAMES
from mlops_assets.core.quality import data_quality as dq
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from testkit.fixtures import write_split_arrays

CLASS_NAMES = ["cat", "dog", "owl"]
SPEC = {"height": 8, "width": 8, "channels": 1}
BALANCED = {"train": [8, 8, 8], "val": [3, 3, 3], "test": [3, 3, 3]}


def make_arrays(per_class: dict[str, list[int]], seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random, pairwise distinct uint8 images: ``per_class[split][k]`` images of class ``k``."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in SPLIT_NAMES:
        labels = np.repeat(np.arange(len(CLASS_NAMES)), per_class[split]).astype(np.int64)
        images = rng.integers(0, 256, size=(len(labels), 1, 8, 8), dtype=np.uint8)
        arrays[split] = (images, labels)
    return arrays


def write_split_dir(directory: Path, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    return write_split_arrays(
        directory, arrays,
        {"class_names": CLASS_NAMES, "spec": SPEC, "counts": {s: len(a[1]) for s, a in arrays.items()}},
    )


def failed(report: dq.DataQualityReport) -> set[str]:
    return set(report.failed_checks)


def test_clean_splits_pass_every_check(tmp_path):
    report = dq.validate_split_directory(write_split_dir(tmp_path / "splits", make_arrays(BALANCED)))
    assert report.success, {n: r.reason for n, r in report.checks.items() if not r.success}
    assert list(report.checks) == list(dq.CHECK_NAMES)
    assert all(r.unexpected_rows == 0 and r.expectations >= 1 for r in report.checks.values())
    assert report.checks["schema"].observed["images"] == 42
    assert report.checks["class_balance"].observed["class_ratio_train"] == 1.0


def test_an_image_in_train_and_test_is_leakage(tmp_path):
    arrays = make_arrays(BALANCED)
    arrays["test"][0][0] = arrays["train"][0][5]
    report = dq.validate_split_directory(write_split_dir(tmp_path / "splits", arrays))
    assert failed(report) == {"no_leakage"}
    leakage = report.checks["no_leakage"]
    (expectation,) = leakage.failed
    assert expectation.expectation == "expect_column_values_to_be_unique(image_hash)"
    # one image, two (image, split) rows: its train row and its test row
    assert expectation.unexpected_rows == 2 and leakage.unexpected_rows == 2
    assert leakage.observed["leaked_images"] == 1
    assert "test+train" in leakage.reason and "split=train" in leakage.reason


def test_duplicates_within_one_split_are_not_leakage(tmp_path):
    arrays = make_arrays(BALANCED)
    arrays["train"][0][1] = arrays["train"][0][0]
    assert dq.validate_split_directory(write_split_dir(tmp_path / "splits", arrays)).success


def test_a_class_missing_from_val_fails_coverage(tmp_path):
    arrays = make_arrays({**BALANCED, "val": [3, 3, 0]})
    report = dq.validate_split_directory(write_split_dir(tmp_path / "splits", arrays))
    assert failed(report) == {"class_coverage"}
    coverage = report.checks["class_coverage"]
    assert coverage.unexpected_rows == 1 and coverage.rows == 9  # 3 splits × 3 classes
    assert coverage.observed["missing"] == "class 'owl' in val"
    assert "class_name=owl" in coverage.failed[0].detail


def test_heavy_imbalance_fails_balance_within_the_configured_bound(tmp_path):
    directory = write_split_dir(tmp_path / "splits", make_arrays({**BALANCED, "train": [40, 3, 8]}))
    report = dq.validate_split_directory(directory)
    assert failed(report) == {"class_balance"}
    balance = report.checks["class_balance"]
    assert balance.unexpected_rows == 1  # dog: 3 < ceil(40 / 10)
    assert balance.observed["class_ratio_train"] == pytest.approx(40 / 3)
    assert "bound 10" in balance.reason
    assert dq.validate_split_directory(directory, max_class_ratio=15.0).success


def test_a_ratio_below_one_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="max_class_ratio"):
        dq.validate_split_directory(write_split_dir(tmp_path / "s", make_arrays(BALANCED)), 0.5)


def test_nan_and_out_of_range_pixels_fail_nulls_range_and_schema():
    arrays = make_arrays(BALANCED)
    train_images, train_labels = arrays["train"]
    floats = train_images.astype(np.float32)
    floats[0, 0, 0, 0] = np.nan
    floats[1, 0, 2, 2] = 300.0
    floats[2, 0, 3, 3] = -1.0
    arrays["train"] = (floats, train_labels)
    report = dq.validate_frames(dq.build_frames(arrays, CLASS_NAMES, SPEC))
    assert failed(report) == {"schema", "no_nulls", "pixel_range"}
    nulls = report.checks["no_nulls"]
    assert nulls.unexpected_rows == 1 and nulls.observed["nan_pixels"] == 1
    assert (nulls.failed[0].type, nulls.failed[0].column) == ("expect_column_values_to_be_between", "n_nan")
    pixel_range = report.checks["pixel_range"]
    assert pixel_range.observed["images_out_of_range"] == 2
    assert sorted(f.unexpected_rows for f in pixel_range.failed) == [1, 1]  # one too low, one too high
    assert [f.column for f in report.checks["schema"].failed] == ["dtype"]
    assert report.checks["schema"].unexpected_rows == 24  # every train image is float32


def test_wrong_geometry_labels_and_row_count_fail_schema():
    arrays = make_arrays(BALANCED)
    images, labels = arrays["val"]
    arrays["val"] = (images, np.where(np.arange(len(labels)) == 0, 7, labels))
    frames = dq.build_frames(arrays, CLASS_NAMES, {**SPEC, "height": 16}, expected_rows=40)
    schema = dq.validate_frames(frames).checks["schema"]
    assert not schema.success
    by_type = {(f.type, f.column): f for f in schema.failed}
    assert set(by_type) == {
        ("expect_column_values_to_be_in_set", "height"),
        ("expect_column_values_to_be_between", "label"),
        ("expect_table_row_count_to_equal", None),
    }
    assert by_type["expect_column_values_to_be_in_set", "height"].unexpected_rows == 42
    assert by_type["expect_column_values_to_be_between", "label"].unexpected_rows == 1
    row_count = by_type["expect_table_row_count_to_equal", None]
    assert row_count.unexpected_rows is None and row_count.detail == "observed 42"


def test_html_report_has_an_index_and_one_gx_page_per_check(tmp_path):
    arrays = make_arrays(BALANCED)
    arrays["test"][0][0] = arrays["train"][0][0]
    report = dq.validate_frames(dq.build_frames(arrays, CLASS_NAMES, SPEC))
    dq.write_html_report(report, tmp_path / "gx", title="synthetic")
    index = (tmp_path / "gx" / dq.INDEX_PAGE).read_text()
    assert "failed: no_leakage" in index
    for check in dq.CHECK_NAMES:
        assert f"href='{dq.page_name(check)}'" in index
        page = (tmp_path / "gx" / dq.page_name(check)).read_text()
        assert "Great Expectations" in page and check in page


def resources(root: Path) -> dict[str, object]:
    return {
        "artifact_store": ArtifactStore(root=str(root / "artifacts")),
        "dataset_source": DatasetSource(kind="digits"),
        "io_manager": dg.FilesystemIOManager(base_dir=str(root / "io")),
    }


def test_checks_pass_on_digits_and_link_the_report(tmp_path):
    result = dg.materialize(
        [raw_images, data_splits, *data_quality_checks],
        resources=resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(dq.CHECK_NAMES)
    reasons = {name: e.metadata["reason"].value for name, e in evaluations.items()}
    assert all(e.passed for e in evaluations.values()), reasons
    for name, evaluation in evaluations.items():
        report = Path(evaluation.metadata["gx_report"].value)
        assert report.name == dq.page_name(name) and report.is_file()
        assert Path(evaluation.metadata["gx_report_index"].value).is_file()
        assert evaluation.metadata["unexpected_rows"].value == 0
    assert evaluations["no_leakage"].metadata["distinct_images"].value > 1700


def test_a_failed_check_blocks_what_depends_on_the_splits(tmp_path):
    @dg.asset
    def needs_clean_splits(data_splits) -> None:
        """Stands in for training."""

    result = dg.materialize(
        [raw_images, data_splits, *data_quality_checks, needs_clean_splits],
        resources=resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"data_quality": {"config": {"max_class_ratio": 1.0}}}},
        raise_on_error=False,
    )
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {n for n, e in evaluations.items() if not e.passed} == {"class_balance"}
    metadata = evaluations["class_balance"].metadata
    assert metadata["expectations_failed"].value == 1
    assert metadata["unexpected_rows"].value > 0
    assert "expect_column_values_to_be_between(n_images" in metadata["failed_expectations"].value
    assert "ratio1-suite" in metadata["gx_report"].value
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert "data_splits" in materialized and "needs_clean_splits" not in materialized
