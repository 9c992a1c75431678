"""Image folders decoded in parallel: the same images, labels, order and skipped files whatever the workers."""

import numpy as np
import pytest

from mlops_assets.core.data.artifacts import open_dataset
from mlops_assets.core.data.image_folder import decode_folder, list_image_folder, load_image_folder
from mlops_assets.core.data.images import DatasetError, PreprocessSpec
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from testkit.fixtures import draw_scale_folder, draw_shape_folder

SPEC = PreprocessSpec(16, 16, 3)


def test_two_processes_decode_exactly_what_one_does(tmp_path):
    folder = draw_shape_folder(tmp_path / "shapes", per_class=25)
    (folder / "circles" / "notes.txt").write_text("not an image")
    listing = list_image_folder(folder)
    one = list(decode_folder(listing, SPEC, workers=1, chunk_files=7))
    two = list(decode_folder(listing, SPEC, workers=2, chunk_files=7))
    assert len(one) == len(two) == 8  # 51 image files in chunks of 7
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
        assert a.sources == b.sources and a.skipped == b.skipped
    skipped = listing.skipped + [s for c in two for s in c.skipped]
    assert sorted(p.rsplit("/", 1)[1] for p, _ in skipped) == ["broken.png", "notes.txt"]
    whole = load_image_folder(folder, SPEC)
    assert np.array_equal(np.concatenate([c.images for c in two]), whole.images)
    assert whole.sources[0] == "circles/circles_000.jpg" and len(whole.sources) == 50


def test_a_class_too_small_is_an_error_after_the_last_chunk(tmp_path):
    folder = draw_shape_folder(tmp_path / "shapes", per_class=3, corrupt=False)
    for extra in list((folder / "squares").iterdir())[1:]:
        extra.unlink()
    chunks = decode_folder(list_image_folder(folder), SPEC, min_per_class=2, workers=2, chunk_files=1)
    with pytest.raises(DatasetError, match="fewer than 2 readable image.*'squares': 1"):
        list(chunks)


def test_the_dataset_version_does_not_depend_on_the_number_of_workers(tmp_path):
    folder = draw_scale_folder(tmp_path / "scale", 1200, size=16, workers=1)
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    versions = set()
    for workers in (1, 2):
        source = DatasetSource(kind="image_folder", path=str(folder), height=16, width=16, decode_workers=workers)
        version, directory = store.publish_built("datasets", lambda d, s=source: s.write_dataset(d, {}))
        versions.add(version)
    assert len(versions) == 1
    stored = open_dataset(directory)
    assert len(stored.rows) == 1200 and stored.class_names == ["circles", "squares", "stripes"]
    assert np.bincount(stored.rows.labels).tolist() == [400, 400, 400]
    assert len(set(stored.rows.hash_list())) == 1200  # generated images are distinct


def test_workers_start_without_re_running_the_callers_script(tmp_path):
    """Spawned workers re-run the parent's main script by default: a script without a ``__main__`` guard (or a
    console script such as ``dagster``) would be run again in every worker. Here it decodes, once."""
    import subprocess
    import sys
    from pathlib import Path

    folder = draw_scale_folder(tmp_path / "scale", 300, size=16, workers=1)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from mlops_assets.core.data.image_folder import decode_folder, list_image_folder\n"
        "from mlops_assets.core.data.images import PreprocessSpec\n"
        "print('script ran')\n"
        f"chunks = decode_folder(list_image_folder({str(folder)!r}), PreprocessSpec(16, 16, 1), workers=2,"
        " chunk_files=50)\n"
        "print('decoded', sum(len(c.labels) for c in chunks))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": ""}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["script ran", "decoded 300"]
