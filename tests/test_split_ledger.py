"""Splits remembered for every image ever seen (issue 25): removing images and putting them back moves nothing.

Wiring tests on the real ``raw_images`` and ``data_splits`` assets over an image folder whose files are moved out and
back between builds, in one artifact store, as a person editing the folder would.
"""

from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.build_stage.data import data_splits, raw_images
from mlops_assets.core.data.artifacts import open_split
from mlops_assets.core.data.splits import SPLIT_NAMES
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from testkit.fixtures import draw_shape_folder


def build_splits(root: Path, folder: Path) -> dict:
    """Materialise the dataset and its splits; returns data_splits' metadata."""
    result = dg.materialize(
        [raw_images, data_splits],
        resources={
            "artifact_store": ArtifactStore(root=str(root / "artifacts")),
            "dataset_source": DatasetSource(kind="image_folder", path=str(folder), height=8, width=8, channels=3),
            "io_manager": dg.FilesystemIOManager(base_dir=str(root / "io")),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "data_splits"]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def split_by_hash(splits_dir: str) -> dict[str, str]:
    return {digest: name for name in SPLIT_NAMES for digest in open_split(splits_dir, name).hash_list()}


def move(files: list[Path], target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in files:
        destination = target / path.parent.name / path.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        moved.append(path.rename(destination))
    return moved


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return draw_shape_folder(tmp_path / "shapes", per_class=60, corrupt=False)


def test_images_removed_for_one_build_and_restored_keep_their_split(tmp_path, folder):
    first = build_splits(tmp_path, folder)
    before = split_by_hash(first["artifact_path"])
    removed = sorted(folder.glob("*/*"))[::6][:20]  # 20 images spread over both classes
    aside = move(removed, tmp_path / "aside")
    build_splits(tmp_path, folder)
    for path in aside:
        path.rename(folder / path.parent.name / path.name)
    third = build_splits(tmp_path, folder)
    after = split_by_hash(third["artifact_path"])
    assert after.keys() == before.keys()
    moved = {h: (before[h], after[h]) for h in before if before[h] != after[h]}
    assert moved == {}
    assert third["images_dealt"] == 0 and third["images_kept"] == len(before)


def test_a_class_folder_absent_for_one_build_keeps_its_splits_when_back(tmp_path, folder):
    draw_shape_folder(tmp_path / "third", per_class=30, seed=1, corrupt=False)
    (tmp_path / "third" / "circles").rename(folder / "dots")
    first = build_splits(tmp_path, folder)
    before = split_by_hash(first["artifact_path"])
    (folder / "dots").rename(tmp_path / "dots-aside")
    build_splits(tmp_path, folder)
    (tmp_path / "dots-aside").rename(folder / "dots")
    third = build_splits(tmp_path, folder)
    after = split_by_hash(third["artifact_path"])
    assert {h: (before[h], after[h]) for h in before if before[h] != after[h]} == {}
    assert third["images_dealt"] == 0


def test_the_ledger_round_trips_and_its_digest_names_what_it_remembers(tmp_path):
    from mlops_assets.core.data.artifacts import SplitLedger, read_split_ledger, write_split_ledger

    mapping = {"b" * 40: "test", "a" * 40: "train", "c" * 40: "val"}
    ledger = SplitLedger.from_mapping(mapping, SPLIT_NAMES)
    write_split_ledger(tmp_path, ledger)
    assert read_split_ledger(tmp_path) == mapping
    assert read_split_ledger(tmp_path / "written-before-ledgers") is None
    forgetful = SplitLedger.from_mapping({k: v for k, v in mapping.items() if v != "val"}, SPLIT_NAMES)
    assert forgetful.digest() != ledger.digest()
