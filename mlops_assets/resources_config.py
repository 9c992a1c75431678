"""The resources every stage is wired with, from the shared settings (see resources/settings.py)."""

from __future__ import annotations

import dagster as dg

from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.model_registry import ModelRegistryResource
from resources.settings import (
    ARTIFACT_ROOT,
    BENTOML_HOME,
    DATASET_KIND,
    IMAGE_CHANNELS,
    IMAGE_FOLDER,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    MODEL_NAME,
    resolve,
    resolve_int,
    setting,
)


def default_resources() -> dict[str, object]:
    artifact_root = resolve(ARTIFACT_ROOT)
    return {
        "artifact_store": ArtifactStore(root=setting(ARTIFACT_ROOT)),
        "dataset_source": DatasetSource(
            kind=resolve(DATASET_KIND),
            path=setting(IMAGE_FOLDER),
            height=resolve_int(IMAGE_HEIGHT),
            width=resolve_int(IMAGE_WIDTH),
            channels=resolve_int(IMAGE_CHANNELS),
        ),
        "model_registry": ModelRegistryResource(home=setting(BENTOML_HOME), model_name=setting(MODEL_NAME)),
        # Asset values are small references to versioned artifacts; keep them beside the artifacts.
        "io_manager": dg.FilesystemIOManager(base_dir=f"{artifact_root}/dagster_io"),
    }
