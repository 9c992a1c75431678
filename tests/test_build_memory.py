"""Bounded memory, measured on the real build: every step of build_job on ~20,000 generated 32×32 images stays
within 3× the dataset's uint8 size + 1 GB of resident memory (the process and its decode workers), counted as PSS:
a shared library's pages count once across the processes mapping them (testkit/build_probe.tree_memory says why
RSS misjudged this in CI)."""

import pytest

from testkit.build_probe import probe_build
from testkit.fixtures import draw_scale_folder

pytestmark = pytest.mark.slow

N_IMAGES = 20_001
ONE_EPOCH = {"ops": {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [16], "epochs": [1]}}}}


def memory_bound(n_images: int, pixels_per_image: int) -> float:
    return 3 * n_images * pixels_per_image + 1e9


def test_every_build_step_stays_within_three_times_the_pixels_plus_one_gigabyte(tmp_path):
    folder = draw_scale_folder(tmp_path / "images", N_IMAGES)
    result = probe_build(folder, tmp_path / "home", ONE_EPOCH)
    assert result["success"], result["failures"]
    assert result["raw_images"]["n_images"] == N_IMAGES and result["raw_images"]["pixel_bytes"] == N_IMAGES * 1024
    bound = memory_bound(N_IMAGES, 32 * 32)
    steps = result["steps"]
    assert {"raw_images", "data_splits", "data_quality", "trained_model", "onnx_model",
            "onnx_model_onnx_matches_torch", "evaluation_report", "registered_model"} <= set(steps)
    over = {name: (step["peak_pss"], step["peak_rss"]) for name, step in steps.items() if step["peak_pss"] > bound}
    assert not over, f"steps over {bound / 1e9:.3f} GB (PSS, RSS): {over}"
    assert result["peak_pss"] <= bound, f"peak PSS {result['peak_pss'] / 1e9:.3f} GB > {bound / 1e9:.3f} GB"


def test_the_probe_counts_the_build_s_own_memory_in_full():
    """PSS (what the bound judges) counts an array this process alone holds in full, and never exceeds RSS."""
    import numpy as np
    import psutil

    from testkit.build_probe import tree_memory

    me = psutil.Process()
    rss_before, pss_before = tree_memory(me)
    held = np.ones(200 * 2**20, dtype=np.uint8)  # 200 MiB written: resident, anonymous, this process's only
    rss_after, pss_after = tree_memory(me)
    assert pss_after - pss_before >= 0.95 * held.nbytes
    assert 0 < pss_after <= rss_after
