"""The label ledger (issue 25): labels changed under the same images, and one image under two labels, block the build.

Pure tests of :mod:`mlops_assets.core.quality.label_integrity`, then wiring tests on the real ``raw_images`` asset with
the code location's checks, over an image folder a person edits between builds.
"""

import re
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.core.quality.label_integrity import LabelLedger, LabelLedgerError, advance, review_labels
from mlops_assets.core.registry.promotion import COMPARED, ChampionComparison, decide_promotion
from mlops_assets.definitions import ASSET_CHECKS, ASSETS
from resources.dataset_source import DatasetSource
from testkit.fixtures import draw_shape_folder, make_resources


def hashes(*names: str) -> np.ndarray:
    return np.asarray([n.ljust(40, "0") for n in names], dtype="S40")


def test_a_relabelled_image_is_found_by_class_name_not_index():
    first = review_labels(hashes("a", "b"), np.array([0, 1]), ["cat", "dog"], ["cat/a", "dog/b"], LabelLedger.empty())
    ledger = advance(LabelLedger.empty(), hashes("a", "b"), np.array([0, 1]), ["cat", "dog"], "v1", first)
    # a new class folder shifts the indices (ant = 0) without relabelling anything
    same = review_labels(hashes("a", "b", "c"), np.array([1, 2, 0]), ["ant", "cat", "dog"],
                         ["cat/a", "dog/b", "ant/c"], ledger)
    assert same.n_changed == 0 and same.n_known == 2 and same.n_images == 3
    swapped = review_labels(hashes("a", "b"), np.array([1, 0]), ["cat", "dog"], ["dog/a", "cat/b"], ledger)
    assert swapped.n_changed == 2 and swapped.transitions == {"cat → dog": 1, "dog → cat": 1}
    assert {(c.source, c.before, c.after) for c in swapped.change_examples} == {("dog/a", "cat", "dog"),
                                                                                 ("cat/b", "dog", "cat")}
    with pytest.raises(LabelLedgerError, match="changed label"):
        advance(ledger, hashes("a", "b"), np.array([1, 0]), ["cat", "dog"], "v2", swapped)
    accepted = advance(ledger, hashes("a", "b"), np.array([1, 0]), ["cat", "dog"], "v2", swapped, "fixed mix-up")
    again = review_labels(hashes("a", "b"), np.array([1, 0]), ["cat", "dog"], ["dog/a", "cat/b"], accepted)
    assert again.n_changed == 0
    assert [e["accepted_reason"] for e in accepted.acceptances_since("v1")] == ["fixed mix-up"]
    assert accepted.acceptances_since("v2") == []


def test_an_image_under_two_labels_is_a_conflict_with_both_sources():
    review = review_labels(hashes("a", "a", "b"), np.array([0, 1, 1]), ["cat", "dog"],
                           ["cat/a.png", "dog/a-copy.png", "dog/b.png"], LabelLedger.empty())
    assert review.n_conflicts == 1 and review.n_changed == 0
    assert review.conflict_examples[0].sources == ("cat/a.png", "dog/a-copy.png")
    assert "cat/a.png and dog/a-copy.png" in review.conflicts_reason()


# -- wiring: the code location's raw_images and its checks ------------------------------------------------------
def build_data(root: Path, folder: Path, accept: str = ""):
    """raw_images and data_splits with every check on them, as the code location defines them."""
    run_config = {"ops": {"label_ledger": {"config": {"accept_label_changes": accept}}}} if accept else {}
    return dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        selection=dg.AssetSelection.assets("raw_images", "data_splits"),
        resources=make_resources(root, DatasetSource(kind="image_folder", path=str(folder), height=8, width=8,
                                                     channels=3)),
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config,
        raise_on_error=False,
    )


def label_checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()
            if e.check_name in ("label_changes", "one_label_per_image")}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def swap(folder: Path, a: str, b: str) -> None:
    (folder / a).rename(folder / "swap-tmp")
    (folder / b).rename(folder / a)
    (folder / "swap-tmp").rename(folder / b)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return draw_shape_folder(tmp_path / "shapes", per_class=20, corrupt=False)


def test_swapped_class_folders_block_the_splits_until_accepted(tmp_path, folder):
    first = build_data(tmp_path, folder)
    assert first.success and all(e.passed for e in label_checks(first).values())
    swap(folder, "circles", "squares")
    blocked = build_data(tmp_path, folder)
    checks = label_checks(blocked)
    assert not checks["label_changes"].passed and checks["one_label_per_image"].passed
    meta = {k: v.value for k, v in checks["label_changes"].metadata.items()}
    assert meta["images_changed_label"] == 40
    assert meta["label_transitions"] == {"circles → squares": 20, "squares → circles": 20}
    assert "circles → squares" in meta["reason"] and "accept_label_changes" in meta["reason"]
    assert re.search(r"\| squares/circles_\d+\.(png|jpg) \| circles \| squares \|", meta["changed_examples"])
    assert "data_splits" not in materialized(blocked)
    # blocked is blocked every time: the ledger was not taught the new labels
    assert not label_checks(build_data(tmp_path, folder))["label_changes"].passed
    accepted = build_data(tmp_path, folder, accept="circles and squares were filed the wrong way round")
    checks = label_checks(accepted)
    assert accepted.success and checks["label_changes"].passed
    assert checks["label_changes"].metadata["accepted_relabelling"].value.startswith("circles and squares")
    assert "data_splits" in materialized(accepted)
    assert label_checks(build_data(tmp_path, folder))["label_changes"].passed  # the ledger now has them


def test_one_image_in_two_class_folders_is_blocked_naming_both_files(tmp_path, folder):
    shutil.copy(folder / "circles" / "circles_003.png", folder / "squares" / "also_a_circle.png")
    result = build_data(tmp_path, folder)
    checks = label_checks(result)
    assert not checks["one_label_per_image"].passed
    meta = {k: v.value for k, v in checks["one_label_per_image"].metadata.items()}
    assert meta["images_with_two_labels"] == 1
    assert "circles/circles_003.png" in meta["reason"] and "squares/also_a_circle.png" in meta["reason"]
    assert "data_splits" not in materialized(result)


# -- the gate: how many compared images changed label since production was trained ------------------------------
def relabelled_comparison(accepted: str = "") -> ChampionComparison:
    return ChampionComparison(
        COMPARED, "prod1", "splits2", n=36, n_test=36, candidate={"accuracy": 0.9722},
        production={"accuracy": 0.3333}, relabelled=24, relabelled_transitions={"hbar → vbar": 12, "vbar → hbar": 12},
        relabel_accepted=accepted,
    )


def test_the_gate_refuses_a_comparison_on_labels_production_never_saw():
    decision = decide_promotion({"accuracy": 0.9722}, relabelled_comparison())
    assert not decision.promote
    assert "24 of the 36 compared test images changed label since production prod1" in decision.reason
    assert "hbar → vbar ×12" in decision.reason and "accept_label_changes" in decision.reason


def test_the_gate_compares_an_accepted_relabelling_and_says_so():
    decision = decide_promotion({"accuracy": 0.9722}, relabelled_comparison("bars were swapped"))
    assert decision.promote
    assert "24 of them changed label since production prod1 was trained" in decision.reason
    assert "relabelling accepted: bars were swapped" in decision.reason


@pytest.mark.slow
def test_swapped_folders_accepted_reach_the_gate_which_names_the_relabelling(tmp_path, folder):
    source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8, channels=3)
    fast = {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [8], "epochs": [15]}},
            "registered_model": {"config": {"floor": 0.0, "min_gain_over_baseline": 0.0, "min_compared_rows": 5}}}

    def build(extra_ops: dict):
        return dg.materialize(
            [*ASSETS, *ASSET_CHECKS], selection=dg.AssetSelection.groups("build", "deploy"),
            resources=make_resources(tmp_path, source), instance=dg.DagsterInstance.ephemeral(),
            run_config={"ops": {**fast, **extra_ops}}, raise_on_error=False,
        )

    assert build({}).success
    swap(folder, "circles", "squares")
    result = build({"label_ledger": {"config": {"accept_label_changes": "the folders were swapped by mistake"}}})
    assert result.success
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key.to_user_string() == "registered_model"]
    registered = {k: v.value for k, v in events[-1].materialization.metadata.items()}
    comparison = registered["champion_vs_challenger"]
    assert registered["compared_rows_relabelled"] > 0
    assert registered["relabel_accepted"] == "the folders were swapped by mistake"
    assert "changed label since production" in registered["gate_reason"]
    assert "relabelling accepted: the folders were swapped by mistake" in registered["gate_reason"]
    assert "changed label since production" in comparison
