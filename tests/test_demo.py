"""`make demo` on a user's own folder: what it says and its exit status when its model does not reach production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops_assets.core.common import settings

ROOT = Path(__file__).resolve().parents[1]


def noise_folder(root: Path, per_class: int = 30, seed: int = 0) -> Path:
    """Two classes of random pixels: nothing to learn, so a model scores about what guessing does."""
    from mlops_assets.core.data.images import write_png

    rng = np.random.default_rng(seed)
    for name in ("left", "right"):
        for i in range(per_class):
            write_png(root / name / f"{i:03d}.png", rng.integers(0, 256, size=(1, 12, 12), dtype=np.uint8))
    return root


def run_demo(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in settings.ALL and k != "DAGSTER_HOME"}
    (tmp_path / "dagster").mkdir(exist_ok=True)
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(DAGSTER_HOME=str(tmp_path / "dagster"), MLOPS_HOME=str(tmp_path / "mlops"),
               MLOPS_ENV_FILE=str(tmp_path / "no.env"), PYTHONPATH=str(ROOT), **variables)
    return subprocess.run([sys.executable, "-m", "mlops_assets.tools.demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_demo_exits_non_zero_and_says_so_when_no_model_reaches_production(tmp_path):
    folder = noise_folder(tmp_path / "noise")
    done = run_demo(tmp_path, MLOPS_DATASET_KIND="image_folder", MLOPS_IMAGE_FOLDER=str(folder),
                    MLOPS_IMAGE_HEIGHT="8", MLOPS_IMAGE_WIDTH="8")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "majority-class baseline" in output  # the gate's reason, with the rule it applied
    assert "NOT promoted" in output and "nothing is served: no model is in production" in output
    assert "mlops-registry promote" in output


def test_when_the_new_model_stays_a_candidate_the_demo_names_the_model_that_keeps_serving():
    """The digits in production, a folder of circles and squares refused: the user learns the digits still answer."""
    from mlops_assets.core.registry.registry import ModelVersion
    from mlops_assets.tools.demo import not_promoted_lines

    digits = ModelVersion("image_classifier:d1", "d1", "2026-12-01T00:00:00", {},
                          {"class_names": [str(i) for i in range(12)]}, "/store/d1", "production")
    lines = "\n".join(not_promoted_lines("image_classifier:s2", "not compatible with production d1", digits))
    assert "NOT promoted: image_classifier:s2 stays a candidate: not compatible with production d1" in lines
    assert "keeps answering with production d1 (classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more)" in lines
    assert "mlops-registry promote s2" in lines
