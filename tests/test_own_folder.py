"""A user's own image folder: where the geometry came from, and every file not used, counted by reason."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.build_stage.data import raw_images
from mlops_assets.core.common import settings
from mlops_assets.core.data.images import write_png
from resources.dataset_source import DatasetSource
from testkit.fixtures import make_resources

GEOMETRY = (settings.IMAGE_HEIGHT, settings.IMAGE_WIDTH, settings.IMAGE_CHANNELS)


def photo_folder(root: Path, per_class: int = 4, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        for i in range(per_class):
            write_png(root / name / f"{i}.png", rng.integers(0, 256, size=(1, size, size), dtype=np.uint8))
    return root


def materialize_raw_images(root: Path, source: DatasetSource) -> dict:
    result = dg.materialize([raw_images], resources=make_resources(root, source),
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    event = result.get_asset_materialization_events()[-1]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture
def clean_geometry(monkeypatch):
    """No geometry variable set, and none recorded as read from a file (the test's own settings file decides)."""
    for name in (*GEOMETRY, settings.DATASET_KIND, settings.IMAGE_FOLDER):
        monkeypatch.setenv(name, "restored after the test")
        monkeypatch.delenv(name)
    monkeypatch.setattr(settings, "FROM_FILE", {}, raising=False)


def test_a_stale_settings_file_geometry_is_named_in_the_build_and_its_shrinking_warned(tmp_path, monkeypatch,
                                                                                        clean_geometry):
    """The walkthrough's .env (8×8) still applies when a user points the build at their own 64×64 photos."""
    from resources.defaults import default_resources

    stale = tmp_path / "walkthrough.env"
    stale.write_text("MLOPS_IMAGE_HEIGHT=8\nMLOPS_IMAGE_WIDTH=8\n")
    monkeypatch.setenv(settings.ENV_FILE, str(stale))
    settings.load_env_file()
    monkeypatch.setenv(settings.DATASET_KIND, "image_folder")
    monkeypatch.setenv(settings.IMAGE_FOLDER, str(photo_folder(tmp_path / "photos")))
    source = default_resources()["dataset_source"]
    assert (source.height.env_var_name, source.width.env_var_name) == GEOMETRY[:2]  # the UI names the variables
    meta = materialize_raw_images(tmp_path / "run", source)
    assert meta["image_shape"] == "1×8×8"
    assert f"MLOPS_IMAGE_HEIGHT=8, MLOPS_IMAGE_WIDTH=8 from the settings file {stale}" in meta["geometry_source"]
    assert "MLOPS_IMAGE_CHANNELS=1 by default" in meta["geometry_source"]
    warning = meta["geometry_warning"]
    assert "8 of 8 images" in warning and "more than 4×" in warning and str(stale) in warning


def test_the_geometry_from_the_environment_or_the_default_is_named_and_a_mild_resize_not_warned(tmp_path,
                                                                                                 monkeypatch,
                                                                                                 clean_geometry):
    from resources.defaults import default_resources

    monkeypatch.setenv(settings.ENV_FILE, str(tmp_path / "none.env"))
    monkeypatch.setenv(settings.IMAGE_HEIGHT, "48")
    monkeypatch.setenv(settings.DATASET_KIND, "image_folder")
    monkeypatch.setenv(settings.IMAGE_FOLDER, str(photo_folder(tmp_path / "photos")))
    source = default_resources()["dataset_source"]
    meta = materialize_raw_images(tmp_path / "run", source)
    assert meta["image_shape"] == "1×48×32"
    assert meta["geometry_source"] == ("MLOPS_IMAGE_HEIGHT=48 from the environment; "
                                       "MLOPS_IMAGE_WIDTH=32, MLOPS_IMAGE_CHANNELS=1 by default")
    assert meta["geometry_warning"] == "none"


def quirky_folder(root: Path) -> Path:
    """What a real folder holds besides its images: a phone burst in a sub-folder, macOS and Windows litter,
    an empty file, a half-copied JPEG, notes, a README beside the classes."""
    import io

    from PIL import Image

    rng = np.random.default_rng(1)
    for name in ("cats", "dogs"):
        for i in range(3):
            write_png(root / name / f"{i}.png", rng.integers(0, 256, size=(1, 16, 16), dtype=np.uint8))
    for i in range(2):
        write_png(root / "dogs" / "burst" / f"{i}.png", rng.integers(0, 256, size=(1, 16, 16), dtype=np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(64, 64), dtype=np.uint8)).save(buffer, format="JPEG")
    (root / "cats" / "half.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "cats" / "empty.png").write_bytes(b"")
    (root / "cats" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "dogs" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "dogs" / "notes.txt").write_text("vet on Tuesday")
    (root / "README.md").write_text("my pets")
    return root


def test_every_file_not_used_is_listed_with_a_reason_a_person_reads_and_counted_by_it(tmp_path):
    from mlops_assets.core.data.image_folder import load_image_folder, skipped_by_reason
    from mlops_assets.core.data.images import PreprocessSpec

    root = quirky_folder(tmp_path / "pets")
    dataset = load_image_folder(root, PreprocessSpec(8, 8, 1))  # the nested folder does not abort the build
    assert sorted(dataset.sources) == ["cats/0.png", "cats/1.png", "cats/2.png", "dogs/0.png", "dogs/1.png",
                                       "dogs/2.png"]
    reasons = {str(Path(path).relative_to(root)): reason for path, reason in dataset.skipped}
    assert reasons["cats/empty.png"] == "empty file"
    assert reasons["cats/half.jpg"].startswith("truncated")
    assert reasons["cats/.DS_Store"].startswith("system file") and reasons["dogs/Thumbs.db"].startswith("system file")
    assert reasons["dogs/burst"].startswith("nested folder") and "2 file(s)" in reasons["dogs/burst"]
    assert reasons["dogs/notes.txt"].startswith("not an image")
    assert not any("BufferedReader" in reason for reason in reasons.values())
    assert skipped_by_reason(dataset.skipped) == {
        "empty file": 1, "truncated": 1, "not an image": 1, "system file": 2, "nested folder": 1,
        "beside the class folders": 1,
    }


def test_the_build_counts_skipped_files_by_reason_and_warns_of_a_nested_folder(tmp_path):
    root = quirky_folder(tmp_path / "pets")
    source = DatasetSource(kind="image_folder", path=str(root), height=8, width=8)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([raw_images], resources=make_resources(tmp_path / "run", source), instance=instance)
    assert result.success
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[-1].materialization.metadata.items()}
    assert meta["n_images"] == 6 and meta["n_skipped"] == 7
    assert meta["skipped_by_reason"] == {"empty file": 1, "truncated": 1, "not an image": 1, "system file": 2,
                                         "nested folder": 1, "beside the class folders": 1}
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any("nested folder" in w and "dogs/burst" in w for w in warnings), warnings
