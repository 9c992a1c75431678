"""Integration: materialise the real build graph with Dagster, on digits and on an image folder."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.core.data.artifacts import open_split, read_manifest, read_split
from mlops_assets.core.registry.registry import ModelRegistry
from mlops_assets.definitions import ASSET_CHECKS, ASSETS
from resources.dataset_source import DatasetSource
from testkit.fixtures import draw_shape_folder, make_resources

pytestmark = pytest.mark.slow

BUILD_KEYS = ["raw_images", "data_splits", "trained_model", "onnx_model", "evaluation_report", "registered_model"]


def materialize_build(root: Path, run_config: dict | None = None, source: DatasetSource | None = None):
    """build_job's build and deploy groups with their checks (registration, the Bento, its application test, the
    release), exactly as the code location defines them."""
    return dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        selection=dg.AssetSelection.groups("build", "deploy"),
        resources=make_resources(root, source),
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config or {},
        raise_on_error=False,
    )


def metadata(result, key: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    assert events, f"{key} was not materialised"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def production_comparison(result) -> dict:
    """The same-rows comparison with production, from the evaluation_report's value (the page shows it as a table)."""
    return result.output_for_node("evaluation_report").production_comparison


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    result = materialize_build(root)
    return root, result


def test_digits_build_succeeds_with_every_check_passing(digits_build):
    _, result = digits_build
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    for key in BUILD_KEYS:
        metadata(result, key)


def test_digits_accuracy_floor_and_onnx_parity(digits_build):
    _, result = digits_build
    evaluation = metadata(result, "evaluation_report")
    assert evaluation["accuracy"] >= 0.97
    parity = next(e for e in result.get_asset_check_evaluations() if e.check_name == "onnx_matches_torch")
    assert parity.passed and parity.metadata["max_abs_diff"].value <= 1e-4


def test_evaluation_report_shows_each_figure_once(digits_build):
    """Issue 30: the headline figures are their own (plotted) entries, the Markdown table adds only the same-rows
    comparison with production; no raw JSON repeats them. The comparison's figures are in the asset's value and
    in its report file, for whoever reads them."""
    _, result = digits_build
    event = [e for e in result.get_asset_materialization_events()
             if e.asset_key.to_user_string() == "evaluation_report"][-1]
    shown = event.materialization.metadata
    assert [k for k, v in shown.items() if isinstance(v, dg.JsonMetadataValue)] == []
    report = json.loads(Path(shown["report_path"].value).read_text())
    assert production_comparison(result) == report["production_comparison"]
    assert production_comparison(result)["status"] == "no production model yet"  # the first build
    # the bias sentence names the classes; its figures are the plotted entries beside it
    for figure in ("worst_class_recall", "recall_gap"):
        assert f"{shown[figure].value:.3f}" not in shown["bias_signal"].value


def test_the_report_explains_the_model_and_its_explanations_pass_their_checks(digits_build):
    """Issue 39: per-class maps and the most confident mistakes in the report, the fidelity and sanity checks
    passed on the trained model, and the verdict stored with the registered version (the service reads it)."""
    root, result = digits_build
    evaluation = metadata(result, "evaluation_report")
    assert "data:image/png;base64," in evaluation["explanations_per_class"]
    assert evaluation["explanations_shown"] is True
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "explanations_are_faithful")
    assert check.passed and check.metadata["ratio"].value >= 2 and check.metadata["sanity_spearman"].value < 0.5
    report = json.loads((Path(evaluation["report_path"]).parent / "explanations.json").read_text())
    assert report["fidelity"]["n_images"] == report["sample_rows"] > 0 and len(report["mistakes"]) <= 8
    production = ModelRegistry(root / "bentoml", "image_classifier").production()
    assert production.metadata["explanations"] == {"passed": True, "method": "occlusion", "reason": check.description}


def test_splits_are_versioned_and_immutable(digits_build):
    root, result = digits_build
    splits = metadata(result, "data_splits")
    manifest = read_manifest(splits["artifact_path"])
    assert manifest["version"] == splits["version"]
    assert splits["rows_train"] + splits["rows_val"] + splits["rows_test"] == 1797
    x, y = read_split(splits["artifact_path"], "test")
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0 and len(y) == splits["rows_test"]


def test_registry_holds_the_promoted_model_with_lineage(digits_build):
    root, result = digits_build
    registered = metadata(result, "registered_model")
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    production = registry.production()
    assert registered["release_pending"] is True and metadata(result, "production_release")["promoted"] is True
    assert production is not None and production.tag == registered["tag"]
    assert production.labels["splits_version"] == metadata(result, "data_splits")["version"]
    assert production.metadata["dagster_run_id"] == result.run_id
    accuracy = metadata(result, "evaluation_report")["accuracy"]
    assert production.metadata["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert set(production.metadata["hyperparameters"]) >= {"lr", "hidden", "epochs"}
    # what the harm trigger judges traffic against: the model's outputs on its validation split
    record = production.metadata["output_reference"]
    assert record["split"] == "val" and record["n_rows"] == metadata(result, "data_splits")["rows_val"]
    assert len(record["confidences"]) == record["n_rows"] and sum(record["class_counts"].values()) == record["n_rows"]
    assert registered["validation_accuracy"] == pytest.approx(record["validation_accuracy"])
    assert record["validation_accuracy"] >= 0.9
    share_above = np.mean(np.asarray(record["confidences"]) > record["atc_threshold"])  # ATC: equals accuracy
    assert share_above == pytest.approx(record["validation_accuracy"], abs=1.5 / record["n_rows"])
    assert production.onnx_path.is_file()


def test_the_registered_version_stores_its_ood_calibration_from_its_validation_split(digits_build):
    """registered_model calibrates the out-of-distribution threshold on the version's own validation split
    (MLOPS_OOD_FPR, 5 %) and stores it with the version: what the service flags with (issue 36)."""
    from mlops_assets.core.model.ood import calibration_of

    root, result = digits_build
    production = ModelRegistry(root / "bentoml", "image_classifier").production()
    calibration = calibration_of(production.metadata)
    splits = metadata(result, "data_splits")
    assert calibration is not None and calibration.target_fpr == 0.05
    assert calibration.method == "mahalanobis" and calibration.n_fit == splits["rows_train"]
    assert calibration.n_validation == splits["rows_val"]
    assert abs(calibration.validation_fpr - 0.05) <= 1.0 / calibration.n_validation
    assert metadata(result, "registered_model")["ood_threshold"] == pytest.approx(calibration.threshold)


def test_rebuild_is_reproducible_and_rewrites_nothing(digits_build):
    """Same data, same config → same split, model and ONNX versions; registry unchanged."""
    root, first = digits_build
    onnx_dir = Path(metadata(first, "onnx_model")["artifact_path"]).parent
    mtime = onnx_dir.stat().st_mtime_ns
    second = materialize_build(root)
    assert second.success
    for key in ("data_splits", "trained_model", "onnx_model"):
        assert metadata(second, key)["version"] == metadata(first, key)["version"], key
    # unchanged split, config and training code: the model is reused, not trained again
    assert metadata(first, "trained_model")["reused"] == "trained"
    assert metadata(second, "trained_model")["reused"] == f"reused {metadata(first, 'trained_model')['version']}"
    logs = [e.message for e in second.all_events if e.message]
    assert not any("epoch" in m and "train loss" in m for m in logs)
    assert onnx_dir.stat().st_mtime_ns == mtime
    assert len(ModelRegistry(root / "bentoml", "image_classifier").list_versions()) == 1
    assert "already the production model" in metadata(second, "registered_model")["gate_reason"]


def test_gate_refuses_a_worse_model_and_keeps_production(digits_build):
    root, first = digits_build
    production_before = ModelRegistry(root / "bentoml", "image_classifier").production().version
    weak = {"ops": {"trained_model": {"config": {"learning_rates": [1e-4], "hidden": [4], "epochs": [1]}},
                    "registered_model": {"config": {"floor": 0.0, "min_gain_over_baseline": 0.0,
                                                         "max_regression": 0.01}}}}
    result = materialize_build(root, weak)
    registered = metadata(result, "registered_model")
    assert registered["promoted"] is False
    assert "below production" in registered["gate_reason"]
    assert "on the same" in registered["gate_reason"] and registered["compared_rows"] > 0
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    assert registry.production().version == production_before
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "promoted_to_production")
    assert gate.passed and gate.metadata["outcome"].value == "kept as a candidate"  # the gate did its job
    assert "below production" in gate.metadata["reason"].value
    assert production_comparison(result)["status"] == "compared"


def test_image_folder_build_with_a_corrupt_file(tmp_path):
    folder = draw_shape_folder(tmp_path / "shapes", per_class=40)
    source = DatasetSource(kind="image_folder", path=str(folder), height=16, width=16, channels=3)
    fast = {"ops": {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [8], "epochs": [15]}}}}
    result = materialize_build(tmp_path / "run", fast, source)
    assert result.success
    raw = metadata(result, "raw_images")
    assert raw["n_images"] == 80 and raw["n_skipped"] == 1 and "broken.png" in raw["skipped_files"]
    assert raw["image_shape"] == "3×16×16"
    splits_dir = metadata(result, "data_splits")["artifact_path"]
    sizes = open_split(splits_dir, "train").original_sizes
    assert sizes is not None and len(sizes) == metadata(result, "data_splits")["rows_train"] and sizes.min() >= 24
    assert metadata(result, "evaluation_report")["accuracy"] >= 0.9
    report = json.loads(Path(metadata(result, "evaluation_report")["report_path"]).read_text())
    assert [row["class"] for row in report["metrics"]["per_class"]] == ["circles", "squares"]


def test_one_class_folder_fails_the_run_with_a_clear_error(tmp_path):
    (tmp_path / "imgs" / "cats").mkdir(parents=True)
    draw_shape_folder(tmp_path / "tmp", per_class=3, corrupt=False)
    for f in (tmp_path / "tmp" / "circles").iterdir():
        f.rename(tmp_path / "imgs" / "cats" / f.name)
    source = DatasetSource(kind="image_folder", path=str(tmp_path / "imgs"), height=8, width=8)
    result = materialize_build(tmp_path / "run", None, source)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "at least two" in str(failure.event_specific_data.error)
