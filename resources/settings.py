"""Settings shared by Dagster, the Bento service, the CLI and the deployment files.

One set of environment variable names, read in one place. Locally everything defaults to
``./.mlops`` under the working directory; in production the same variables point at shared volumes.
"""

from __future__ import annotations

import os
from pathlib import Path

MLOPS_HOME = "MLOPS_HOME"  # root of everything below, when the specific variables are not set
ARTIFACT_ROOT = "MLOPS_ARTIFACT_ROOT"  # versioned artifacts (splits, models, reports, profiles)
BENTOML_HOME = "BENTOML_HOME"  # BentoML's own variable: model store, bentos, production pointer
MODEL_NAME = "MLOPS_MODEL_NAME"
DATASET_KIND = "MLOPS_DATASET_KIND"  # digits | image_folder
IMAGE_FOLDER = "MLOPS_IMAGE_FOLDER"
IMAGE_HEIGHT = "MLOPS_IMAGE_HEIGHT"  # image_folder images are converted to this geometry
IMAGE_WIDTH = "MLOPS_IMAGE_WIDTH"
IMAGE_CHANNELS = "MLOPS_IMAGE_CHANNELS"  # 1 (grayscale) or 3 (RGB)

DEFAULTS_RELATIVE_TO_HOME = {ARTIFACT_ROOT: "artifacts", BENTOML_HOME: "bentoml"}


def mlops_home() -> Path:
    return Path(os.environ.get(MLOPS_HOME, ".mlops")).expanduser().resolve()


def default_for(name: str) -> str:
    if name in DEFAULTS_RELATIVE_TO_HOME:
        return str(mlops_home() / DEFAULTS_RELATIVE_TO_HOME[name])
    return {
        MODEL_NAME: "image_classifier",
        DATASET_KIND: "digits",
        IMAGE_FOLDER: "",
        IMAGE_HEIGHT: "32",
        IMAGE_WIDTH: "32",
        IMAGE_CHANNELS: "1",
    }[name]


def setting(name: str):
    """An ``EnvVar`` when the variable is set (the UI then shows where the value came from),
    otherwise the local default, so ``dagster dev`` works on a fresh clone with nothing set."""
    import dagster as dg

    return dg.EnvVar(name) if os.environ.get(name) else default_for(name)


def resolve(name: str) -> str:
    """The value itself, for code outside Dagster (CLI, Bento service, benchmarks)."""
    return os.environ.get(name) or default_for(name)


def resolve_int(name: str) -> int:
    value = resolve(name)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None
