"""Shared pytest fixtures (the helpers themselves live in ``testkit``, shared with the benchmarks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.fixtures import draw_shape_folder


@pytest.fixture
def shape_folder(tmp_path: Path) -> Path:
    return draw_shape_folder(tmp_path / "shapes")
