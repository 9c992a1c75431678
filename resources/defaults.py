"""The resources every stage is wired with, from the one settings module (``mlops_assets/ml/settings.py``).

The fields wired through :func:`setting` (paths, the model name, the run-config file, the secrets) reach Dagster
as an ``EnvVar`` when their variable is set (the UI then shows where the value came from); every other field is
the value the settings module resolves at load (environment, ``.env``, default). docs/settings.md lists which
are which (generated from this module). A variable that is not set gives its local default, so ``dagster dev``
works on a fresh clone with nothing set.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlops_assets.ml import settings
from resources.alerts import AlertSink
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource
from resources.performance_policy import PerformancePolicy
from resources.service_auth import ServiceAuth


def setting(name: str):
    """``EnvVar(name)`` when the variable is set, otherwise the setting's default."""
    return dg.EnvVar(name) if settings.is_set(name) else settings.default_for(name)


def default_alert_file() -> str:
    return settings.resolve(settings.ALERT_FILE) or str(
        Path(settings.resolve(settings.ARTIFACT_ROOT)) / "alerts" / "alerts.jsonl"
    )


def default_resources() -> dict[str, object]:
    artifact_root = settings.resolve(settings.ARTIFACT_ROOT)
    return {
        "artifact_store": ArtifactStore(root=setting(settings.ARTIFACT_ROOT)),
        "dataset_source": DatasetSource(
            kind=settings.resolve(settings.DATASET_KIND),
            path=setting(settings.IMAGE_FOLDER),
            height=settings.resolve_int(settings.IMAGE_HEIGHT),
            width=settings.resolve_int(settings.IMAGE_WIDTH),
            channels=settings.resolve_int(settings.IMAGE_CHANNELS),
            geometry_origin=settings.describe_origins(
                (settings.IMAGE_HEIGHT, settings.IMAGE_WIDTH, settings.IMAGE_CHANNELS)
            ),
            max_image_pixels=settings.resolve_int(settings.MAX_IMAGE_PIXELS),
            decode_workers=settings.resolve_int(settings.DECODE_WORKERS),
        ),
        "model_registry": ModelRegistryResource(
            home=setting(settings.BENTOML_HOME), model_name=setting(settings.MODEL_NAME),
            require_approval=settings.resolve_flag(settings.REQUIRE_APPROVAL),
        ),
        "drift_policy": DriftPolicy(
            drift_share=settings.resolve_float(settings.DRIFT_SHARE),
            p_value=settings.resolve_float(settings.DRIFT_P_VALUE),
            distance=settings.resolve_float(settings.DRIFT_DISTANCE),
            min_rows=settings.resolve_int(settings.DRIFT_MIN_ROWS),
            cooldown_hours=settings.resolve_float(settings.DRIFT_COOLDOWN_HOURS),
            retrain_requires_new_data=settings.resolve_flag(settings.RETRAIN_REQUIRES_NEW_DATA),
            blind_alert_minutes=settings.resolve_float(settings.DRIFT_BLIND_ALERT_MINUTES),
            retrain_run_config=setting(settings.RETRAIN_RUN_CONFIG),
            retrain_trigger=setting(settings.RETRAIN_TRIGGER),
            harm_points=settings.resolve_float(settings.HARM_POINTS),
        ),
        "performance_policy": PerformancePolicy(
            min_accuracy=settings.resolve_float(settings.PERF_MIN_ACCURACY),
            max_recall_gap=settings.resolve_float(settings.PERF_MAX_RECALL_GAP),
            min_labelled=settings.resolve_int(settings.PERF_MIN_LABELLED),
            min_class_labelled=settings.resolve_int(settings.PERF_MIN_CLASS_LABELLED),
        ),
        "service_auth": ServiceAuth(api_token=setting(settings.API_TOKEN)),
        "alert_sink": AlertSink(
            file=default_alert_file(), webhook_url=setting(settings.ALERT_WEBHOOK_URL),
        ),
        # Asset values are small references to versioned artifacts; keep them beside the artifacts.
        "io_manager": dg.FilesystemIOManager(base_dir=f"{artifact_root}/dagster_io"),
    }
