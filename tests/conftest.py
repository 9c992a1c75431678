"""Shared pytest fixtures (the helpers themselves live in ``testkit``, shared with the benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

# Tests are hermetic: a developer's ./.env (the walkthrough's settings) must not change what they see.
# Set before anything imports mlops_assets.core.common.settings, which loads the file on import.
os.environ["MLOPS_ENV_FILE"] = os.devnull

import pytest

from testkit.fixtures import draw_shape_folder


@pytest.fixture
def shape_folder(tmp_path: Path) -> Path:
    return draw_shape_folder(tmp_path / "shapes")
