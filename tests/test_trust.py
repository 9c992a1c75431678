"""Decisions the loop can trust, on the real build graph: one split for champion and challenger, stable
splits when the data grows, and no incompatible model replacing production as a side effect of a build."""

import pytest

from mlops_assets.core.data.artifacts import read_split_hashes
from mlops_assets.core.data.images import load_digits_dataset
from mlops_assets.core.registry.registry import ModelRegistry
from mlops_assets.tools.registry_cli import main as registry_cli
from mlops_assets.tools.simulator import apply_drift, write_labelled_images
from resources.dataset_source import DatasetSource
from tests.test_build_job import materialize_build, metadata, production_comparison

pytestmark = pytest.mark.slow

FAST = {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [16], "epochs": [15]}}}


def run_config(relabelling: str = "", **gate) -> dict:
    """``relabelling``: the reason to accept images the label ledger knows under other class names."""
    ops = dict(FAST)
    if gate:
        ops["registered_model"] = {"config": gate}
    if relabelling:
        ops["label_ledger"] = {"config": {"accept_label_changes": relabelling}}
    return {"ops": ops}


# The same digits renamed to a user's own two classes are, to the label ledger, images whose label changed.
RENAMED = "digits 0 and 1 renamed to zeros and ones"


@pytest.fixture(scope="module")
def digits_folder_world(tmp_path_factory):
    """Digits as an image folder, built once: production is a model that never saw inverted digits."""
    root = tmp_path_factory.mktemp("trust")
    digits = load_digits_dataset()
    folder = root / "images"
    write_labelled_images(folder, digits.images, digits.labels, digits.class_names, "digit")
    source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8, channels=1)
    first = materialize_build(root, run_config(), source)
    assert first.success
    return root, folder, source, digits, first


def test_after_drift_the_gate_compares_both_models_on_the_new_split_and_promotes_the_better(digits_folder_world):
    """Production stored 0.98 on its clean split; on today's split (with inverted digits) it is far worse.

    The old gate compared the candidate with the stored 0.98 and refused a much better model."""
    root, folder, source, digits, first = digits_folder_world
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    champion = registry.production()
    stored = champion.metadata["metrics"]["accuracy"]
    old_splits = metadata(first, "data_splits")
    inverted, labels = apply_drift(digits.images[:900], digits.labels[:900], "invert")
    write_labelled_images(folder, inverted, labels, digits.class_names, "inverted")

    second = materialize_build(root, run_config(), source)
    assert second.success
    splits = metadata(second, "data_splits")
    # stable splits: every old image kept its split; the champion's training images are not in the test split
    assert splits["parent_version"] == old_splits["version"] and splits["images_kept"] == 1797
    assert splits["images_dealt"] == 900
    trained_on = read_split_hashes(old_splits["artifact_path"], ("train", "val"))
    assert not trained_on & read_split_hashes(splits["artifact_path"], ("test",))

    comparison = production_comparison(second)
    assert comparison["status"] == "compared" and comparison["excluded"] == 0
    assert comparison["n"] == splits["rows_test"] and comparison["production_version"] == champion.version
    candidate, production = comparison["candidate"]["accuracy"], comparison["production"]["accuracy"]
    assert production < stored - 0.05, "the drifted split must be harder for production than its own split"
    assert candidate > production
    registered = metadata(second, "registered_model")
    assert metadata(second, "production_release")["promoted"] is True, registered["gate_reason"]
    assert f"vs production {champion.version}'s {production:.4f}" in registered["gate_reason"]
    assert f"figure at its registration was {stored:.4f}" in registered["gate_reason"]
    assert registry.production().version == registered["tag"].split(":")[1]
    event = registry.events()[-1]
    assert event["action"] == "promote" and event["actor"].startswith("dagster run ")


def test_a_seed_change_excludes_productions_training_images_from_the_comparison(digits_folder_world):
    root, _, source, _, _ = digits_folder_world
    config = run_config()
    config["ops"]["data_splits"] = {"config": {"seed": 7}}
    result = materialize_build(root, config, source)
    assert result.success
    comparison = production_comparison(result)
    assert comparison["excluded"] > 0  # a fresh deal puts production's training images in the test split
    assert comparison["n"] == comparison["n_test"] - comparison["excluded"]
    assert f"{comparison['excluded']} that production trained on excluded" in \
        metadata(result, "registered_model")["gate_reason"]


@pytest.mark.parametrize(
    "kind, difference", [("classes", "classes differ (2 instead of 10"), ("geometry", "input 3×8×8 instead of 1×8×8")]
)
def test_an_incompatible_candidate_never_replaces_production(digits_folder_world, tmp_path, kind, difference):
    root, _, _, digits, _ = digits_folder_world
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    before = registry.production().version
    folder = tmp_path / kind
    if kind == "classes":  # a user's own two classes
        keep = digits.labels < 2
        write_labelled_images(folder, digits.images[keep], digits.labels[keep], ["zeros", "ones"], "img")
        source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8, channels=1)
    else:  # the same ten classes, read as RGB
        write_labelled_images(folder, digits.images, digits.labels, digits.class_names, "img")
        source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8, channels=3)

    refused = materialize_build(
        root, run_config(RENAMED if kind == "classes" else "", floor=0.0, min_gain_over_baseline=0.0), source)
    registered = metadata(refused, "registered_model")
    assert registered["promoted"] is False and difference in registered["gate_reason"]
    assert "allow_incompatible" in registered["gate_reason"]
    assert production_comparison(refused)["status"] == "incompatible"
    assert registry.production().version == before
    candidate = registered["tag"].split(":")[1]
    assert registry_cli(["--home", str(registry.home), "promote", candidate]) == 2  # the CLI refuses too
    assert registry.production().version == before


def test_replacing_production_with_an_incompatible_model_is_an_explicit_action(digits_folder_world, tmp_path):
    root, _, _, digits, _ = digits_folder_world
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    before = registry.production().version
    keep = digits.labels < 2
    folder = tmp_path / "two"
    write_labelled_images(folder, digits.images[keep], digits.labels[keep], ["zeros", "ones"], "img")
    source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8, channels=1)
    result = materialize_build(
        root, run_config(RENAMED, floor=0.0, min_gain_over_baseline=0.0, allow_incompatible=True), source)
    registered = metadata(result, "registered_model")
    assert metadata(result, "production_release")["promoted"] is True and "explicitly allowed" in \
        registered["gate_reason"]
    assert registry.events()[-1]["incompatible_override"]
    assert registry_cli(["--home", str(registry.home), "rollback"]) == 2  # back is just as incompatible
    assert registry_cli(["--home", str(registry.home), "rollback", "--allow-incompatible"]) == 0
    assert registry.production().version == before
